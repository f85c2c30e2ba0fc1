"""The [influx] section, the token's sources and the choice of API: pure, table-driven."""

import os

import pytest

from agent.config import parse
from kit.errors import ConfigError
from kit.influx import Token, api_for_version, auth_header, load_token, server_message, target_for
from kit.influxconfig import parse_url


@pytest.mark.parametrize("text, key, expected", [
    ('url = "ftp://x"\nbucket = "b"', "influx.url", "http:// or https://"),
    ('url = "http://user:pw@x:8086"\nbucket = "b"', "influx.url", "must not hold credentials"),
    ('url = "http://x:99999"\nbucket = "b"', "influx.url", "invalid port"),
    ('url = "http://x?db=y"\nbucket = "b"', "influx.url", "query"),
    ('url = "http://x:8086"', "influx.bucket", "required when influx.url is set"),
    ('url = "http://x:8086"\napi = "v1"', "influx.database", "required"),
    ('api = "v3"', "influx.api", 'one of "auto", "v2", "v1"'),
    ('verify_tls = "no"', "influx.verify_tls", "true or false"),
    ('batch_size = 0', "influx.batch_size", "between 1 and 100000"),
    ('timeout_s = 0.1', "influx.timeout_s", "between 1 and 300"),
    ('token = "abc"', "influx.token", "unknown key"),
    ('client = "requests"', "influx.client", 'one of "builtin", "influxdb-client"'),
    ('client = "influxdb_client"', "influx.client", 'one of "builtin", "influxdb-client"'),
], ids=["scheme", "userinfo", "port", "query", "no-bucket", "v1-no-db", "api", "tls-type", "batch",
        "timeout", "token-in-config", "client", "client-module-name"])
def test_bad_influx_config_names_the_key(text, key, expected):
    with pytest.raises(ConfigError) as err:
        parse("[influx]\n" + text, "lw.toml")
    assert err.value.key == key
    assert expected in str(err.value)
    assert str(err.value).startswith(f"lw.toml: {key}: ")


def test_defaults_and_a_good_section():
    cfg = parse('[influx]\nurl = "https://eu-central-1-1.aws.cloud2.influxdata.com/"\norg = "ngo"\n'
                'bucket = "linewatch"\n')
    i = cfg.influx
    assert i.verify_tls is True and i.api == "auto" and i.gzip is True and i.batch_size == 2000
    assert i.client == "builtin"
    assert parse_url(i.url) == "https://eu-central-1-1.aws.cloud2.influxdata.com"
    assert parse("").influx.url == ""


def test_city_values_line_protocol_cannot_carry_are_refused():
    with pytest.raises(ConfigError, match=r"agent.city: .*backslash"):
        parse('[agent]\ncity = "Lahore\\\\"\n')


@pytest.mark.parametrize("version, api", [
    ("1.6.7~rc0", "v1"), ("1.7.11", "v1"), ("1.8.10", "v2"), ("v2.7.4", "v2"), ("2.7.1", "v2"),
    ("3.0.1", "v2"), (None, "v2"), ("", "v2"), ("garbage", "v2"),
])
def test_api_for_version(version, api):
    assert api_for_version(version) == api


def test_targets_for_each_api():
    s = parse('[influx]\nurl = "http://x"\ndatabase = "lw"\nretention_policy = "autogen"\n').influx
    assert target_for(s, "v1").database == "lw" and target_for(s, "v1").retention_policy == "autogen"
    assert target_for(s, "v2").bucket == "lw/autogen"  # InfluxDB 1.8+ through /api/v2/write
    s = parse('[influx]\nurl = "http://x"\nbucket = "lw/rp1"\n').influx
    assert (target_for(s, "v1").database, target_for(s, "v1").retention_policy) == ("lw", "rp1")


def section(tmp_path, **kw):
    lines = [f'{k} = "{v}"' for k, v in kw.items()]
    return parse('[influx]\nurl = "http://x"\nbucket = "b"\n' + "\n".join(lines)).influx


def write_token(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_token_sources_in_order(tmp_path):
    f = write_token(tmp_path / "tok", "from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    write_token(creds / "influx-token", "from-credential")
    s = section(tmp_path, token_file=f)
    env = {"LINEWATCH_INFLUX_TOKEN": "from-env", "CREDENTIALS_DIRECTORY": str(creds)}
    assert load_token(s, env).value == "from-env"
    del env["LINEWATCH_INFLUX_TOKEN"]
    t = load_token(s, env)
    assert (t.value, t.warning) == ("from-file", None)
    t = load_token(section(tmp_path), env)
    assert t.value == "from-credential" and "credential" in t.source
    assert load_token(section(tmp_path), {}).value is None


def test_token_file_may_start_with_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".config").mkdir()
    write_token(tmp_path / ".config" / "tok", "from-home")
    t = load_token(section(tmp_path, token_file="~/.config/tok"), {})
    assert t.value == "from-home" and "~/.config/tok" in t.source


def test_token_file_readable_by_others_is_a_warning(tmp_path):
    f = write_token(tmp_path / "tok", "secret-value", 0o644)
    t = load_token(section(tmp_path, token_file=f), {})
    assert t.value == "secret-value" and "readable by other users" in t.warning
    assert "secret-value" not in repr(t) and "secret-value" not in t.warning


@pytest.mark.parametrize("content, expected", [(None, "cannot read"), ("", "is empty"),
                                               ("a\nb", "one line")], ids=["missing", "empty", "two-lines"])
def test_bad_token_file_names_the_key(tmp_path, content, expected):
    f = tmp_path / "tok"
    if content is not None:
        write_token(f, content)
    with pytest.raises(ConfigError) as err:
        load_token(section(tmp_path, token_file=f), {}, "lw.toml")
    assert err.value.key == "influx.token_file" and expected in str(err.value)


def test_auth_headers():
    assert auth_header("abc", "v2") == "Token abc"
    assert auth_header("user:pa:ss", "v1") == "Basic dXNlcjpwYTpzcw=="
    assert auth_header(None, "v2") is None
    assert "abc" not in repr(Token("abc", "x"))


@pytest.mark.parametrize("body, want", [
    (b'{"code":"invalid","message":"unable to parse x"}', "unable to parse x"),
    (b'{"error":"database not found: \\"x\\""}', 'database not found: "x"'),
    (b"404 page not found\n", "404 page not found"),
    (b"", ""),
])
def test_server_message(body, want):
    assert server_message(body) == want
