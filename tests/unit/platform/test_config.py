from __future__ import annotations

import pytest

from vigil.config import ConfigError, load_settings


def _write(tmp_path, text: str):
    p = tmp_path / "vigil.yaml"
    p.write_text(text)
    return p


def test_defaults_load_without_a_file(monkeypatch):
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    s = load_settings(None)
    assert s.kafka.segments_topic == "vigil.segments.v1"
    assert s.camera_defaults.frames_per_segment == 16 and s.camera_defaults.fps == 4.0
    assert s.database_url.startswith("sqlite:///")


def test_unknown_key_is_rejected_by_name(tmp_path):
    p = _write(tmp_path, "kafka:\n  bootstrap_server: localhost:9092\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p)
    assert "kafka.bootstrap_server" in str(e.value) and "unknown key" in str(e.value)


def test_bad_value_names_the_field(tmp_path):
    p = _write(tmp_path, "camera_defaults:\n  fps: -3\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p)
    assert "camera_defaults.fps" in str(e.value)


def test_cameras_inherit_defaults_and_override(tmp_path):
    p = _write(tmp_path, """
camera_defaults:
  fps: 2
  threshold: 0.7
cameras:
  - id: gate
    source: {type: file, path: /videos/gate.mp4}
  - id: lobby
    source: {type: synthetic, scene: plaza}
    params: {threshold: 0.9}
""")
    s = load_settings(p)
    gate, lobby = s.cameras
    assert gate.params.fps == 2 and gate.params.threshold == 0.7
    assert lobby.params.fps == 2 and lobby.params.threshold == 0.9
    assert s.params_for("unknown-cam") == s.camera_defaults


def test_cameras_built_in_python_inherit_defaults_too(tmp_path):
    """Cameras passed as objects (the bench, tests, embedding code) merge like YAML ones: a
    camera whose params were never set used to keep the built-in 4 fps / 16 frames."""
    from vigil.config import CameraConfig, CameraParams, FramesSource

    s = load_settings(None, state_dir=tmp_path, camera_defaults={"fps": 7.5, "frames_per_segment": 8},
                      cameras=[CameraConfig(id="a", source=FramesSource(path=str(tmp_path))),
                               CameraConfig(id="b", source=FramesSource(path=str(tmp_path)),
                                            params=CameraParams(threshold=0.9))])
    a, b = s.cameras
    assert (a.params.fps, a.params.frames_per_segment) == (7.5, 8)
    assert (b.params.fps, b.params.frames_per_segment, b.params.threshold) == (7.5, 8, 0.9)
    assert isinstance(a.source, FramesSource)


def test_environment_overrides_yaml(tmp_path, monkeypatch):
    p = _write(tmp_path, "kafka:\n  bootstrap_servers: yaml:1\n  partitions: 8\n")
    monkeypatch.setenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", "env:2")
    s = load_settings(p)
    assert s.kafka.bootstrap_servers == "env:2" and s.kafka.partitions == 8


def test_duplicate_camera_ids_and_bad_source_type(tmp_path):
    p = _write(tmp_path, """
cameras:
  - {id: a, source: {type: synthetic}}
  - {id: a, source: {type: synthetic}}
""")
    with pytest.raises(ConfigError, match="appears more than once"):
        load_settings(p)
    p = _write(tmp_path, "cameras:\n  - {id: a, source: {type: webcam}}\n")
    with pytest.raises(ConfigError, match="cameras.0.source"):
        load_settings(p)


def test_stream_credentials_not_echoed_in_errors(tmp_path):
    p = _write(tmp_path, "cameras:\n  - {id: 'bad id!', source: {type: rtsp, url: 'rtsp://u:hunter2@cam/1'}}\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p)
    assert "hunter2" not in str(e.value) and "cameras.0.id" in str(e.value)


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_release_threshold_must_not_exceed_threshold():
    with pytest.raises(ConfigError, match="release_threshold"):
        load_settings(None, camera_defaults={"threshold": 0.5, "release_threshold": 0.6})


def test_normality_streams_are_configurable_and_checked():
    from vigil.config import load_settings

    s = load_settings(None, normality={"streams": ["motion", "attr", "place_speed", "dwell"]})
    assert s.normality.streams[-1] == "dwell" and load_settings(None).normality.streams is None
    with pytest.raises(Exception, match="loiter"):
        load_settings(None, normality={"streams": ["loiter"]})
