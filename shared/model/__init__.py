"""The served detector, one concept per module.

- composition: :mod:`~vigil.model.stages` (Detect → Encode → Score, what Serve and ``vigil eval`` run)
- geometry: :mod:`~vigil.model.detectors` (boxes), :mod:`~vigil.model.tubes` (flow, object tubes, crops)
- encoder: :mod:`~vigil.model.backbones` (CLIP registry), :mod:`~vigil.model.video_encoder` (TimeSformer)
- zero-shot streams: :mod:`~vigil.model.anomaly` (their composition), semantic
  :mod:`~vigil.model.frame_scorer` + :mod:`~vigil.model.prompts` + :mod:`~vigil.model.coop`,
  predictive :mod:`~vigil.model.dpc`, :mod:`~vigil.model.temporal`
- object-normality streams: :mod:`~vigil.model.normality` (box speed, place-relative speed,
  motion-pattern density, dwell, tube DPC), box attributes :mod:`~vigil.model.attributes`,
  appearance memory :mod:`~vigil.model.memory`, reasons in words :mod:`~vigil.model.reasons`
- fusion: :mod:`~vigil.model.gate` (context gates), :mod:`~vigil.model.calibration` (one scale per camera)
- weights: :mod:`~vigil.model.heads` (trained heads files)
"""
