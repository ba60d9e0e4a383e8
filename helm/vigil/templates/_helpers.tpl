{{/* ------------------------------------------------------------ names and labels */}}

{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vigil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vigil.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference: (dict "root" $ "image" "vigil-api" "variant" "cpu") */}}
{{- define "vigil.image" -}}
{{- $root := .root -}}
{{- $tag := default $root.Chart.AppVersion $root.Values.image.tag -}}
{{- $variant := default $root.Values.image.variant .variant -}}
{{- printf "%s/%s:%s-%s" $root.Values.image.registry .image $tag $variant -}}
{{- end -}}

{{/* ------------------------------------------------------------ endpoints */}}

{{- define "vigil.kafkaClusterName" -}}
{{- default (printf "%s-kafka" (include "vigil.fullname" .)) .Values.kafka.strimzi.clusterName -}}
{{- end -}}

{{- define "vigil.kafkaBootstrap" -}}
{{- if .Values.kafka.strimzi.enabled -}}
{{- printf "%s-kafka-bootstrap:9092" (include "vigil.kafkaClusterName" .) -}}
{{- else -}}
{{- required "kafka.bootstrapServers is required when kafka.strimzi.enabled is false" .Values.kafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{- define "vigil.rayServiceName" -}}
{{- printf "%s-serve" (include "vigil.fullname" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* The settings file (shared/config.py keys) a pod reads through VIGIL_CONFIG:
     .Values.config, then the endpoints derived from the chart, then each overlay. */}}
{{- define "vigil.settings" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $derived := dict
  "kafka" (dict
    "bootstrap_servers" (include "vigil.kafkaBootstrap" $root)
    "segments_topic" $v.kafka.topics.segments.name
    "events_topic" $v.kafka.topics.events.name
    "dlq_topic" $v.kafka.topics.dlq.name
    "partitions" $v.kafka.topics.segments.partitions
    "events_partitions" $v.kafka.topics.events.partitions
    "dlq_partitions" $v.kafka.topics.dlq.partitions
    "replication_factor" $v.kafka.topics.segments.replicas
    "consumer_group" $v.kafka.consumerGroup)
  "s3" (dict
    "endpoint" (required "s3.endpoint is required" $v.s3.endpoint)
    "bucket" $v.s3.bucket
    "secure" $v.s3.secure
    "region" $v.s3.region
    "public_endpoint" ($v.s3.publicEndpoint | default nil)
    "public_secure" $v.s3.publicSecure)
  "api" (dict "host" "0.0.0.0" "port" ($v.components.api.ports.http | default 8000))
  "dashboard" (dict "host" "0.0.0.0" "port" ($v.components.dashboard.ports.http | default 8501))
-}}
{{- if $v.rayService.enabled -}}
{{- $_ := set $derived "ray" (dict "address" (printf "ray://%s-head-svc:10001" (include "vigil.rayServiceName" $root))) -}}
{{- end -}}
{{- $settings := mergeOverwrite (deepCopy $v.config) $derived -}}
{{- range .overlays -}}
{{- $settings = mergeOverwrite $settings (deepCopy (default (dict) .)) -}}
{{- end -}}
{{- toYaml $settings -}}
{{- end -}}

{{/* Secrets by reference: (dict "root" $ "secrets" (list "s3" "database" "auth")) */}}
{{- define "vigil.secretEnv" -}}
{{- $v := .root.Values -}}
{{- range .secrets }}
{{- if eq . "s3" }}
- name: VIGIL_S3__ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ $v.s3.existingSecret | quote }}, key: {{ $v.s3.accessKeyKey | quote }}}}
- name: VIGIL_S3__SECRET_KEY
  valueFrom: {secretKeyRef: {name: {{ $v.s3.existingSecret | quote }}, key: {{ $v.s3.secretKeyKey | quote }}}}
{{- else if eq . "database" }}
- name: VIGIL_DATABASE__URL
  valueFrom: {secretKeyRef: {name: {{ $v.database.existingSecret | quote }}, key: {{ $v.database.urlKey | quote }}}}
{{- else if eq . "auth" }}
- name: VIGIL_API__ADMIN_KEY
  valueFrom: {secretKeyRef: {name: {{ $v.auth.existingSecret | quote }}, key: {{ $v.auth.adminKeyKey | quote }}}}
{{- else if eq . "sources" }}
- name: VIGIL_SECURITY__SOURCE_KEY
  valueFrom: {secretKeyRef: {name: {{ $v.auth.existingSecret | quote }}, key: {{ $v.auth.sourceKeyKey | quote }}}}
{{- end }}
{{- end }}
{{- end -}}

{{/* A Ray pod template (head or worker) for RayService / RayJob clusters:
     (dict "root" $ "image" "vigil-scoring" "component" "ray-scoring" "spec" .Values.rayService.head
           "isHead" true "extraEnv" (dict ...)) */}}
{{- define "vigil.rayPodTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
metadata:
  labels:
    {{- include "vigil.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  annotations:
    checksum/config: {{ include "vigil.settings" (dict "root" $root "overlays" (list)) | sha256sum }}
spec:
  {{- if not (and .isHead .autoscaling) }}
  {{- /* An autoscaling head keeps KubeRay's own ServiceAccount: its autoscaler sidecar needs the API. */}}
  serviceAccountName: {{ include "vigil.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- with $v.image.pullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- with .spec.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .spec.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ ternary "ray-head" "ray-worker" .isHead }}
      image: {{ include "vigil.image" (dict "root" $root "image" .image "variant" .spec.variant) }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      securityContext:
        {{- toYaml $v.containerSecurityContext | nindent 8 }}
      env:
        - name: VIGIL_CONFIG
          value: /etc/vigil/config.yaml
        - name: VIGIL_RAY__ADDRESS
          value: auto
        # replicas share the pod's cores: torch's OpenMP threads sleep between regions rather than spin
        - name: OMP_WAIT_POLICY
          value: PASSIVE
        {{- range $k, $val := .extraEnv }}
        - name: {{ $k }}
          value: {{ $val | quote }}
        {{- end }}
        {{- include "vigil.secretEnv" (dict "root" $root "secrets" .secrets) | nindent 8 }}
      {{- if .isHead }}
      ports:
        - {name: gcs-server, containerPort: 6379}
        - {name: dashboard, containerPort: 8265}
        - {name: client, containerPort: 10001}
        - {name: serve, containerPort: 8000}
      {{- end }}
      resources:
        {{- toYaml .spec.resources | nindent 8 }}
      lifecycle:
        preStop:
          exec:
            command: ["/bin/bash", "-c", "ray stop"]
      volumeMounts:
        - {name: config, mountPath: /etc/vigil, readOnly: true}
        - {name: ray-logs, mountPath: /tmp/ray}
  volumes:
    - name: config
      configMap:
        name: {{ include "vigil.fullname" $root }}-config
    - name: ray-logs
      emptyDir: {}
{{- end -}}
