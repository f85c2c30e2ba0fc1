"""Config loading and validation: every bad value fails with one line naming file, key and expectation."""

from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from agent import config
from agent.alerts.settings import ChannelSection
from agent.config import Config, parse
from kit import definitions
from kit.errors import ConfigError


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
    ("[probe]\ngateway = \"router\"",
     "config.toml: probe.gateway: must be \"auto\", \"off\" or an IP address"),
    ("[probe]\ndns_servers = [\"dns.google\"]",
     "config.toml: probe.dns_servers: [0] 'dns.google': must be an IP address"),
    ("[probe]\ndns_names = [\"bad..name\"]", "config.toml: probe.dns_names: [0] 'bad..name'"),
    ("[probe]\ntimeout_s = 10",
     "config.toml: probe.timeout_s: must be shorter than probe.interval_s (10), got 10"),
    ("[probe]\ninterval_s = 2\ntimeout_s = 2",
     "config.toml: probe.timeout_s: must be shorter than probe.interval_s (2), got 2"),
    ("[probe]\nmethod = \"udp\"", "config.toml: probe.method: must be one of"),
    ("[agent]\nregion = \"Punjab\"",
     "config.toml: agent.region: must be an ISO 3166-2 code: \"PK-PB\" for Punjab, got 'Punjab'"),
    ("[agent]\nregion = \"pk-sd\"",
     "config.toml: agent.region: must be an ISO 3166-2 code: \"PK-SD\" for Sindh, got 'pk-sd'"),
    ("[agent]\nregion = \"Atlantis\"", "config.toml: agent.region: must be an ISO 3166-2 code such as "
     "PK-PB (Punjab); Pakistan's are PK-BA, PK-GB, PK-IS, PK-JK, PK-KP, PK-PB, PK-SD, got 'Atlantis'"),
    ("[agent]\nregion = \"PK-XX\"", "config.toml: agent.region: must be one of Pakistan's ISO 3166-2 "
     "codes (PK-BA Balochistan, PK-GB Gilgit-Baltistan, PK-IS Islamabad Capital Territory, PK-JK Azad "
     "Jammu and Kashmir, PK-KP Khyber Pakhtunkhwa, PK-PB Punjab, PK-SD Sindh), got 'PK-XX'"),
    ("[agent]\naccess = \"DSL\"", "config.toml: agent.access: must be one of fibre, dsl, cable, mobile, "
     "hotspot, wireless, satellite, other (\"dsl\"?), got 'DSL'"),
    ("[agent]\naccess = \"4g\"", "config.toml: agent.access: must be one of fibre"),
    ("[agent]\nid = \"has space\"", "config.toml: agent.id: must be 1-64 letters"),
    ("[agent]\nsite = \"our flat\"", "config.toml: agent.site: must be 1-64 letters, digits, '.', '_' or '-' "
     "(or empty: derived from the gateway), got 'our flat'"),
    ("[outage]\nopen_after = 0", "config.toml: outage.open_after: must be between 1 and 1000, got 0"),
    ("[outage]\nmomentary_max_s = -1", "config.toml: outage.momentary_max_s: must be >= 0, got -1"),
    ("[report]\naccount = \"a\\nb\"",
     "config.toml: report.account: must be one line of at most 64 characters"),
    ("[report]\nplan_download_mbps = -5", "config.toml: report.plan_download_mbps: must be the paid "
     "speed in Mbit/s (> 0), or 0 for not set, got -5"),
    ("[report]\nplan_upload_mbps = \"fast\"", "config.toml: report.plan_upload_mbps: must be a number"),
    ("[probe]\ninterval_s = nan", "config.toml: probe.interval_s: must be a finite number"),
    ("[probe\ninterval_s = 1", "config.toml: not valid TOML"),
    ("[[alerts.channels]]\nkind = \"telegram\"\nchat_id = \"1\"\non_lan = true",
     "config.toml: alerts.channels[0].on_lan: the desktop is this machine and Telegram's servers"),
    ("[[alerts.channels]]\nkind = \"desktop\"\non_lan = true",
     "config.toml: alerts.channels[0].on_lan: the desktop is this machine"),
    ("[[alerts.channels]]\nkind = \"ntfy\"\nurl = \"http://192.168.1.5/t\"\non_lan = \"yes\"",
     "config.toml: alerts.channels[0].on_lan: must be"),
]


@pytest.mark.parametrize("text, message", BAD,
                         ids=[m.split(": ")[1] + f"-{i}" for i, (_, m) in enumerate(BAD)])
def test_bad_config_names_file_key_and_expectation(text, message):
    with pytest.raises(ConfigError) as err:
        parse(text, "config.toml")
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_report_keys_are_optional_and_parse():
    assert (parse("").report.account, parse("").report.plan_download_mbps) == ("", 0.0)
    cfg = parse('[report]\naccount = " 0042-77 "\nplan_download_mbps = 50\nplan_upload_mbps = 10.5\n')
    assert (cfg.report.account, cfg.report.plan_download_mbps, cfg.report.plan_upload_mbps) == \
        ("0042-77", 50.0, 10.5)


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
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        config.load(str(tmp_path / "nope.toml"), {"HOME": str(tmp_path)})


def test_systemd_state_directory(tmp_path):
    cfg = config.load(None, {"HOME": str(tmp_path), "STATE_DIRECTORY": "/var/lib/linewatch:/other"})
    assert cfg.state_dir == Path("/var/lib/linewatch")


def test_example_config_documents_every_key_and_parses():
    text = config.example_toml()
    head, _, channel = text.partition("# [[alerts.channels]]\n")
    for name, cls in [*config.SECTIONS.items(), ("alerts.channels", ChannelSection)]:
        assert f"[{name}]" in text
        for f in cls.__dataclass_fields__.values():
            if f.name == "channels":
                continue  # the [[alerts.channels]] tables, whose keys are checked next
            assert f"# {f.name} = " in (channel if cls is ChannelSection else head), \
                f"{name}.{f.name} missing from the example"
            assert f.metadata["doc"], f"{name}.{f.name} has no doc"
    assert parse(text) == Config(source="config.toml")
    # every commented default, uncommented, is the default value itself (the channel's table is
    # an example, not defaults)
    uncommented = "\n".join(line[2:] if " = " in line and line.startswith("# ") else line
                            for line in head.splitlines())
    assert parse(uncommented) == Config(source="config.toml")


def test_shipped_example_is_current():
    shipped = Path(__file__).parents[1] / "docs" / "example-config.toml"
    assert shipped.read_text(encoding="utf-8") == config.example_toml(), \
        ("regenerate: python -c 'from agent.config import example_toml; print(example_toml(), end=\"\")'"
         " > docs/example-config.toml")


@pytest.mark.parametrize("text, timeout", [
    ("[probe]\ninterval_s = 2", 1.0),
    ("[probe]\ninterval_s = 1", 0.5),
    ("[probe]\ninterval_s = 3", 1.5),
    ("[probe]\ninterval_s = 60", 2.0),
    ("[probe]\ncount = 5", 2.0),
    ("", 2.0),
    ("[probe]\ninterval_s = 2\ntimeout_s = 0.3", 0.3),
], ids=["2s", "1s", "3s", "60s", "interval-unset", "no-probe-section", "timeout-set"])
def test_an_unset_timeout_follows_the_interval(text, timeout):
    assert parse(text).probe.timeout_s == timeout


@pytest.mark.parametrize("text, code, confirm", [
    ("PK-PB", "PK-PB", False),
    ("pk-kp", "PK-KP", False),
    (" PK GB ", "PK-GB", False),
    ("Punjab", "PK-PB", False),
    ("punjab", "PK-PB", False),
    ("KPK", "PK-KP", False),
    ("KP", "PK-KP", False),
    ("NWFP", "PK-KP", False),
    ("Khyber Pakhtunkhwa", "PK-KP", False),
    ("khyber-pakhtunkhwa", "PK-KP", False),
    ("Islamabad", "PK-IS", False),
    ("ICT", "PK-IS", False),
    ("GB", "PK-GB", False),
    ("Gilgit-Baltistan", "PK-GB", False),
    ("AJK", "PK-JK", False),
    ("Azad Kashmir", "PK-JK", False),
    ("Balochistan", "PK-BA", False),
    ("Baluchistan", "PK-BA", False),
    ("Sindh", "PK-SD", False),
    ("پنجاب", "PK-PB", False),
    ("اسلام آباد", "PK-IS", False),
    ("Karachi", "PK-SD", True),
    ("Hyderabad", "PK-SD", True),
    ("Sukkur", "PK-SD", True),
    ("Lahore", "PK-PB", True),
    ("Faisalabad", "PK-PB", True),
    ("Rawalpindi", "PK-PB", True),
    ("Multan", "PK-PB", True),
    ("Gujranwala", "PK-PB", True),
    ("Peshawar", "PK-KP", True),
    ("Quetta", "PK-BA", True),
    ("Gilgit", "PK-GB", True),
    ("Muzaffarabad", "PK-JK", True),
    ("کراچی", "PK-SD", True),
    ("IN-MH", "IN-MH", False),
    ("gb-eng", "GB-ENG", False),
    ("", "", False),
], ids=lambda v: v if isinstance(v, str) else None)
def test_region_code_as_people_type_it(text, code, confirm):
    assert definitions.region_code(text) == (code, confirm)
    assert parse(f'[agent]\nregion = "{code}"').agent.region == code  # what it gives is valid


@pytest.mark.parametrize("text, message", [
    ("PK-XX", "PK-XX is not one of Pakistan's ISO 3166-2 codes (PK-BA Balochistan, "),
    ("pk-pun", "pk-pun is not one of Pakistan's ISO 3166-2 codes"),
    ("Atlantis", "'Atlantis' is not a region linewatch knows: expected a province or territory "
                 "(Punjab, Sindh, KPK, Balochistan, Islamabad, GB, AJK) or an ISO 3166-2 code"),
    ("Pakistan", "'Pakistan' is not a region linewatch knows"),
], ids=["unknown-pk-code", "long-pk-code", "unknown-name", "country"])
def test_region_code_rejects(text, message):
    with pytest.raises(ValueError) as err:
        definitions.region_code(text)
    assert str(err.value).startswith(message)


@given(st.one_of(st.text(max_size=30), st.sampled_from(["PK-", "pk-", "Karachi", "KPK", "IN-"]).flatmap(
    lambda head: st.text(max_size=4).map(lambda tail: head + tail))))
def test_region_code_gives_a_valid_code_or_one_sentence(text):
    """Whatever is typed: a code the config file accepts, or one line saying what is wrong."""
    try:
        code, _ = definitions.region_code(text)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert config.check_value("agent", "region", code) is None


@given(st.text(max_size=12))
def test_access_type_gives_a_valid_type_or_one_sentence(text):
    try:
        value = definitions.access_type(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
    else:
        assert config.check_value("agent", "access", value) is None


@pytest.mark.parametrize("text, value", [
    ("DSL", "dsl"), ("Fibre", "fibre"), ("fiber", "fibre"), ("FTTH", "fibre"), ("vdsl", "dsl"),
    (" Mobile ", "mobile"), ("", ""),
])
def test_access_type_in_any_case(text, value):
    assert definitions.access_type(text) == value


def test_access_type_rejects_with_the_choices():
    with pytest.raises(ValueError, match="'4G' is not an access type: one of fibre, dsl, cable"):
        definitions.access_type("4G")


def test_check_value_runs_the_field_check():
    assert config.check_value("agent", "city", "Lahore") is None
    assert config.check_value("agent", "city", "x" * 65) == "must be one line of at most 64 characters"
    assert config.check_value("agent", "region", "PK-XX").startswith("must be one of Pakistan's")


def test_reloaded_applies_the_tags_and_names_what_waits_for_a_restart():
    running = parse('[agent]\nregion = "PK-PB"\ncity = "Lahore"\n[probe]\ninterval_s = 10\n', "a.toml")
    new = parse('[agent]\nregion = "PK-SD"\naccess = "dsl"\n[probe]\ninterval_s = 3\n'
                '[power]\nups = "nut://u:secret@localhost/ups"\n', "b.toml")
    cfg, applied, waiting = config.reloaded(running, new)
    assert applied == ["agent.region", "agent.city", "agent.access"]
    # the interval alone moved the unset timeout: both wait
    assert waiting == ["probe.interval_s", "probe.timeout_s", "power.ups"]
    assert (cfg.agent.region, cfg.agent.city, cfg.agent.access) == ("PK-SD", "", "dsl")
    assert cfg.probe == running.probe and cfg.power == running.power   # what the jobs still use
    assert cfg.source == "b.toml"
    assert config.reloaded(cfg, new)[1] == []        # applied once; the rest still waits
    assert config.reloaded(running, running) == (running, [], [])
