"""Settings (TF Serving flag names) and the model_config_list text-protobuf parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import (
    ConfigError,
    ModelConfig,
    Settings,
    VersionPolicy,
    config_from_settings,
    load_model_config_file,
    parse_model_config_list,
)

EXAMPLE = """\
# two models
model_config_list {
  config { name: "seed_cnn" base_path: "/models/seed_cnn" model_platform: "tensorflow"
           model_version_policy { specific { versions: 1 versions: 2 } }
           version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } }
  config { name: "mlp" base_path: "models/mlp" model_version_policy { all {} } }  # trailing
}
"""


def test_settings_defaults_follow_tf_serving() -> None:
    s = Settings()
    assert s.rest_api_port == 8501
    assert s.rest_api_host == "127.0.0.1"
    assert s.file_system_poll_wait_seconds == 1.0
    assert s.model_config_file_poll_wait_seconds == 0
    assert s.allow_version_labels_for_unavailable_models is False
    assert s.rest_api_timeout_in_ms == 5000
    assert s.admin_token is None
    assert s.max_request_bytes == 64 * 1024 * 1024
    assert s.max_num_load_retries == 5
    assert s.load_retry_interval_micros == 60_000_000
    assert s.num_load_threads == 2


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBASERVE_REST_API_PORT", "9000")
    monkeypatch.setenv("NUMBASERVE_ALLOW_VERSION_LABELS_FOR_UNAVAILABLE_MODELS", "true")
    monkeypatch.setenv("NUMBASERVE_ADMIN_TOKEN", "s3cret")
    s = Settings()
    assert s.rest_api_port == 9000
    assert s.allow_version_labels_for_unavailable_models is True
    assert s.admin_token == "s3cret"
    assert Settings(rest_api_port=1234).rest_api_port == 1234  # explicit beats env


def test_parse_example() -> None:
    seed, mlp = parse_model_config_list(EXAMPLE, base_dir="/etc/numbaserve")
    assert seed == ModelConfig(
        "seed_cnn", "/models/seed_cnn", "tensorflow", VersionPolicy("specific", versions=(1, 2)),
        {"stable": 1, "canary": 2},
    )
    assert mlp.name == "mlp"
    assert mlp.base_path == str(Path("/etc/numbaserve/models/mlp"))
    assert mlp.version_policy == VersionPolicy("all")
    assert mlp.model_platform == "numbaserve"
    assert mlp.version_labels == {}


def test_parse_latest_default_and_syntax_variants() -> None:
    text = """
    model_config_list: {
      config: < name: 'a' base_path: "/m/" "a" >,
      config { name: "b"; base_path: "/m/b"
               model_version_policy: { latest: { num_versions: 3 } } }
      config { name: "c" base_path: "/m/c"
               model_version_policy { specific { versions: [3, 1, 3] } }
               logging_config { }  # accepted and ignored
      }
    }"""
    a, b, c = parse_model_config_list(text)
    assert a.base_path == "/m/a"  # adjacent strings concatenate
    assert a.version_policy == VersionPolicy("latest", num_versions=1)
    assert b.version_policy == VersionPolicy("latest", num_versions=3)
    assert c.version_policy.versions == (1, 3)


def test_relative_base_path_without_base_dir_is_kept() -> None:
    (cfg,) = parse_model_config_list('model_config_list { config { name: "m" base_path: "x" } }')
    assert cfg.base_path == "x"


def test_empty_text_is_no_models() -> None:
    assert parse_model_config_list("# nothing\n") == []
    assert parse_model_config_list("model_config_list { }") == []


@pytest.mark.parametrize(
    ("text", "line", "col", "words"),
    [
        ('model_config_list {\n  config { name: "a" bse_path: "/x" }\n}', 2, 22, "bse_path"),
        ('model_config_list {\n  config { name "a" base_path: "/x" }\n}', 2, 17, "':'"),
        ('model_config_list {\n  config { name: "a base_path: /x }\n}', 2, 18, "unterminated"),
        ('model_config_list {\n  config { base_path: "/x" }\n}', 2, 3, "name"),
        ('model_config_list {\n  config { name: "a" }\n}', 2, 3, "base_path"),
        ('model_config_list {\n  config { name: "a" base_path: "/x" ', 2, 38, "'}'"),
        ('model_config {\n}', 1, 1, "model_config"),
        ('model_config_list { config { name: "a" base_path: "/x"\n'
         '  model_version_policy { newest {} } } }', 2, 26, "newest"),
        ('model_config_list { config { name: "a" base_path: "/x"\n'
         '  model_version_policy { latest { num_versions: 0 } } } }', 2, 35, "num_versions"),
        ('model_config_list { config { name: "a" base_path: "/x"\n'
         '  model_version_policy { specific { versions: two } } } }', 2, 47, "integer"),
        ('model_config_list { config { name: "a" base_path: "/x"\n'
         '  version_labels { key: "s" } } }', 2, 3, "version_labels"),
        ('model_config_list {\n config { name: "a" base_path: "/x" }\n'
         ' config { name: "a" base_path: "/y" } }', 3, 2, "twice"),
        ('model_config_list { config { name: "a" base_path: "/x" name: "b" } }', 1, 56, "twice"),
        ('model_config_list { config { name: 7 base_path: "/x" } }', 1, 36, "quoted"),
        ('model_config_list { config { name: "a" base_path: "/x" } } $', 1, 60, "character"),
    ],
)
def test_parse_errors_name_line_and_column(text: str, line: int, col: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_model_config_list(text, source="models.config")
    err = info.value
    assert isinstance(err, ValueError)
    assert words in str(err)
    assert (err.line, err.column) == (line, col), str(err)
    assert str(err).startswith(f"models.config:{line}:{col}: ")


def test_load_model_config_file_resolves_next_to_file(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "models.config"
    cfg.parent.mkdir()
    cfg.write_text('model_config_list { config { name: "m" base_path: "../models/m" } }')
    (m,) = load_model_config_file(cfg)
    assert m.base_path == str((tmp_path / "models" / "m").resolve())
    with pytest.raises(ConfigError, match="cannot read"):
        load_model_config_file(tmp_path / "missing.config")


def test_config_from_settings(tmp_path: Path) -> None:
    assert config_from_settings(Settings()) == []
    (single,) = config_from_settings(Settings(model_name="mlp", model_base_path=str(tmp_path)))
    assert single == ModelConfig("mlp", str(tmp_path.resolve()))
    assert single.version_policy == VersionPolicy("latest", num_versions=1)
    cfg = tmp_path / "models.config"
    cfg.write_text(EXAMPLE)
    names = [c.name for c in config_from_settings(Settings(model_config_file=str(cfg)))]
    assert names == ["seed_cnn", "mlp"]
    with pytest.raises(ConfigError, match="not both"):
        config_from_settings(Settings(model_config_file=str(cfg), model_base_path="/x"))


def test_model_config_to_json_round_trips_the_policy() -> None:
    seed, mlp = parse_model_config_list(EXAMPLE)
    assert seed.to_json()["model_version_policy"] == {"specific": {"versions": [1, 2]}}
    assert mlp.to_json()["model_version_policy"] == {"all": {}}
    assert VersionPolicy().to_json() == {"latest": {"num_versions": 1}}
