"""Config loading and validation: every bad value fails with one line naming file, key and expectation."""

from pathlib import Path

import pytest

from agent import config
from agent.config import Config, parse
from agent.errors import ConfigError


def test_zero_config_is_valid_and_has_documented_defaults():
    cfg = parse("")
    assert cfg.probe.interval_s == 10
    assert cfg.probe.targets == ("1.1.1.1", "8.8.8.8")
    assert cfg.probe.gateway == "auto"
    assert len(cfg.probe.dns_names) == 1
    assert (cfg.outage.open_after, cfg.outage.close_after, cfg.outage.momentary_max_s) == (3, 2, 300)
    assert cfg.agent.procfs == "/proc" and cfg.agent.sysfs == "/sys"


def test_full_config_parses():
    cfg = parse("""
[agent]
id = "volunteer-17"
region = "PK-SD"
city = "کراچی"
isp = "Nayatel, \\"fibre\\""
access = "fibre"
state_dir = "/var/lib/linewatch"
procfs = "/tmp/proc"
sysfs = "/tmp/sys"
[probe]
interval_s = 5
timeout_s = 1.5
gateway = "192.168.1.1"
targets = ["1.1.1.1", "9.9.9.9:53", "[2606:4700:4700::1111]:443", "2001:4860:4860::8888"]
dns_names = ["example.com", "پاکستان.pk"]
dns_servers = ["127.0.0.53", "::1"]
[outage]
open_after = 2
close_after = 1
momentary_max_s = 60
""", "x.toml")
    assert cfg.agent.city == "کراچی"
    assert cfg.probe.interval_s == 5.0 and isinstance(cfg.probe.interval_s, float)
    assert cfg.outage.momentary_max_s == 60
    assert cfg.source == "x.toml"


BAD = [
    ("[probe]\ninterval_s = 0", "config.toml: probe.interval_s: must be >= 1, got 0"),
    ("[probe]\ninterval_s = \"10\"", "config.toml: probe.interval_s: must be a number, got '10'"),
    ("[probe]\ninterval_s = true", "config.toml: probe.interval_s: must be a number, got true"),
    ("[probe]\ncount = 2.5", "config.toml: probe.count: must be an integer, got 2.5"),
    ("[probe]\nintervall_s = 10", "config.toml: probe.intervall_s: unknown key"),
    ("[probes]\ninterval_s = 10", "config.toml: probes: unknown section"),
    ("probe = 3", "config.toml: probe: must be a table"),
    ("[probe]\ntargets = [\"1.1.1\"]", "config.toml: probe.targets: [0] '1.1.1'"),
    ("[probe]\ntargets = [\"one.one.one.one\"]", "config.toml: probe.targets: [0] 'one.one.one.one'"),
    ("[probe]\ntargets = [\"1.1.1.1:0\"]", "config.toml: probe.targets: [0] '1.1.1.1:0'"),
    ("[probe]\ntargets = \"1.1.1.1\"", "config.toml: probe.targets: must be a list of strings"),
    ("[probe]\ngateway = \"router\"", "config.toml: probe.gateway: must be \"auto\", \"off\" or an IP address"),
    ("[probe]\ndns_servers = [\"dns.google\"]", "config.toml: probe.dns_servers: [0] 'dns.google': must be an IP address"),
    ("[probe]\ndns_names = [\"bad..name\"]", "config.toml: probe.dns_names: [0] 'bad..name'"),
    ("[probe]\ntimeout_s = 10", "config.toml: probe.timeout_s: must be shorter than probe.interval_s (10), got 10"),
    ("[probe]\nmethod = \"udp\"", "config.toml: probe.method: must be one of"),
    ("[agent]\nregion = \"Punjab\"", "config.toml: agent.region: must be an ISO 3166-2 code"),
    ("[agent]\naccess = \"4g\"", "config.toml: agent.access: must be one of fibre"),
    ("[agent]\nid = \"has space\"", "config.toml: agent.id: must be 1-64 letters"),
    ("[agent]\nsite = \"our flat\"", "config.toml: agent.site: must be 1-64 letters, digits, '.', '_' or '-' (or empty: derived from the gateway), got 'our flat'"),
    ("[outage]\nopen_after = 0", "config.toml: outage.open_after: must be between 1 and 1000, got 0"),
    ("[outage]\nmomentary_max_s = -1", "config.toml: outage.momentary_max_s: must be >= 0, got -1"),
    ("[probe]\ninterval_s = nan", "config.toml: probe.interval_s: must be a finite number"),
    ("[probe\ninterval_s = 1", "config.toml: not valid TOML"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m.split(": ")[1] + f"-{i}" for i, (_, m) in enumerate(BAD)])
def test_bad_config_names_file_key_and_expectation(text, message):
    with pytest.raises(ConfigError) as err:
        parse(text, "config.toml")
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_load_order(tmp_path, monkeypatch):
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    # nothing anywhere: defaults, state dir under XDG data / HOME
    cfg = config.load(None, env)
    assert cfg.source == "(defaults)"
    assert cfg.state_dir == tmp_path / ".local/share/linewatch"
    # platform config dir
    p = tmp_path / "xdg/linewatch/config.toml"
    p.parent.mkdir(parents=True)
    p.write_text("[probe]\ninterval_s = 20\n")
    assert config.load(None, env).probe.interval_s == 20
    # $LINEWATCH_CONFIG beats it, --config beats both
    q = tmp_path / "env.toml"
    q.write_text("[probe]\ninterval_s = 30\n")
    assert config.load(None, {**env, "LINEWATCH_CONFIG": str(q)}).probe.interval_s == 30
    r = tmp_path / "cli.toml"
    r.write_text("[probe]\ninterval_s = 40\n")
    assert config.load(str(r), {**env, "LINEWATCH_CONFIG": str(q)}).probe.interval_s == 40


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: file not found"):
        config.load(str(tmp_path / "nope.toml"), {"HOME": str(tmp_path)})


def test_systemd_state_directory(tmp_path):
    cfg = config.load(None, {"HOME": str(tmp_path), "STATE_DIRECTORY": "/var/lib/linewatch:/other"})
    assert cfg.state_dir == Path("/var/lib/linewatch")


def test_example_config_documents_every_key_and_parses():
    text = config.example_toml()
    for name, cls in config.SECTIONS.items():
        assert f"[{name}]" in text
        for f in cls.__dataclass_fields__.values():
            assert f"# {f.name} = " in text, f"{name}.{f.name} missing from the example"
            assert f.metadata["doc"], f"{name}.{f.name} has no doc"
    assert parse(text) == Config(source="config.toml")
    # every commented default, uncommented, is the default value itself
    uncommented = "\n".join(line[2:] if " = " in line and line.startswith("# ") else line
                            for line in text.splitlines())
    assert parse(uncommented) == Config(source="config.toml")


def test_shipped_example_is_current():
    shipped = Path(__file__).parents[1] / "docs" / "example-config.toml"
    assert shipped.read_text(encoding="utf-8") == config.example_toml(), \
        "regenerate: python -c 'from agent.config import example_toml; print(example_toml(), end=\"\")' > docs/example-config.toml"
