"""Config: defaults in code, YAML overrides, --set overrides, one-line errors naming the key."""

import pytest

from etl.config import ConfigError, load_config, parse_override

from conftest import REPO


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_shared_corpus_conf_declares_the_four_raw_families_and_the_missing_ones():
    cfg = load_config(str(REPO / "conf" / "shared_corpus.yaml"))
    raw = {f.name for f in cfg.raw_families()}
    assert {"counsel_chat", "counsel_chat_legacy", "hh_rlhf_harmless", "esconv_failed"} <= raw
    generated = {f.name for f in cfg.families if f.source == "generated"}
    assert {"long_running_therapy", "edge_case_synthetic", "sarcasm", "roleplay_simulator"} <= generated
    assert cfg.raw_root.endswith("shared/data/raw")


def test_set_override_parses_yaml_values_into_nested_keys():
    assert parse_override("dedup.num_perm=64") == {"dedup": {"num_perm": 64}}
    cfg = load_config(None, ["dedup.num_perm=64", "upload=false", "raw_root=."])
    assert cfg.dedup.num_perm == 64 and cfg.upload is False


def test_extends_merges_families_from_the_parent_file():
    cfg = load_config(str(REPO / "conf" / "sample.yaml"), check_paths=False)
    assert cfg.family("counsel_chat").min_records == 50
    assert cfg.family("counsel_chat").format == "qa_csv"


@pytest.mark.parametrize("text, message", [
    ("raw_root: .\nlake_rot: x\n", "lake_rot: unknown key"),
    ("raw_root: .\nupload: maybe\n", "upload: expected true or false"),
    ("raw_root: .\ndedup: {num_perm: many}\n", "dedup.num_perm: expected an integer"),
    ("raw_root: .\nfamilies: {x: {path: 'x/**', format: parquet}}\n", "families.x.format: unknown format 'parquet'"),
    ("raw_root: /nonexistent/raw\n", "raw_root: /nonexistent/raw does not exist"),
    ("raw_root: .\nupload: true\nrelease_uri: /tmp/x\n", "release_uri: upload is true"),
    ("raw_root: .\nsplits: {ratios: {train: 0.5, val: 0.1, test: 0.1}}\n", "splits.ratios"),
    ("raw_root: [unclosed\n", "not valid YAML"),
])
def test_bad_config_fails_with_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_conf_file_names_the_file():
    with pytest.raises(ConfigError, match="conf/nope.yaml: file not found"):
        load_config("conf/nope.yaml")


def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys):
    from etl.cli import main

    rc = main(["inventory", "--conf", write(tmp_path, "raw_root: .\nbogus: 1\n")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "config error: bogus: unknown key" in err and "Traceback" not in err


def test_release_id_hash_ignores_where_things_are_but_not_what_they_contain():
    from etl.config import load_config

    base = load_config(None, ["lake_root=/a/lake", "s3_endpoint_url=http://127.0.0.1:4001"], check_paths=False)
    moved = load_config(None, ["lake_root=/b/lake", "s3_endpoint_url=http://127.0.0.1:5002", "release_uri=s3://b/p", "upload=true",
                               "verify.max_examples=9"], check_paths=False)
    other = load_config(None, ["lake_root=/a/lake", "dedup.jaccard_threshold=0.8"], check_paths=False)
    assert base.config_hash(content_only=True) == moved.config_hash(content_only=True)
    assert base.config_hash() != moved.config_hash()
    assert base.config_hash(content_only=True) != other.config_hash(content_only=True)
