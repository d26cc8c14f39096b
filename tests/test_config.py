"""Configuration: the example loads, and every broken file names file, key and problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relay.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.toml"

MINIMAL = """
[network]
name = "BIN Test"
address = "bin@example.org"

[imap]
host = "127.0.0.1"
username = "bin@example.org"
password_env = "X_IMAP"

[smtp]
host = "127.0.0.1"

[[wards]]
slug = "maaspoort"
name = "Maaspoort"
postcodes = ["5221"]
streets = ["Marathonloop"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "binrelay.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value).replace(str(path), "FILE")


def test_example_config_loads_with_the_spec_shape() -> None:
    config = load_config(EXAMPLE)
    assert config.network.address == "bin@example.org"
    assert config.imap is not None and config.imap.password_env == "BINRELAY_IMAP_PASSWORD"
    assert config.smtp.connections == 4
    assert config.wards[0].slug == "maaspoort"
    assert config.partners[0].kind == "police"
    assert config.approval.remind_urgent_minutes == 30
    assert config.retention.days == 90


def test_minimal_config_gets_safe_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.network.language == "nl"
    assert config.imap is not None and config.imap.processed_folder == "Verwerkt"
    assert config.delivery.resident_attachments is False
    assert config.database.url.startswith("sqlite:")


def test_missing_key(tmp_path: Path) -> None:
    text = MINIMAL.replace('name = "BIN Test"\n', "")
    assert error_of(tmp_path, text) == "FILE: network.name: required key is missing"


def test_missing_section(tmp_path: Path) -> None:
    text = MINIMAL.replace('[smtp]\nhost = "127.0.0.1"\n', "")
    assert error_of(tmp_path, text) == "FILE: smtp: required key is missing"


def test_wrong_type(tmp_path: Path) -> None:
    text = MINIMAL.replace('[smtp]\nhost = "127.0.0.1"', '[smtp]\nhost = "127.0.0.1"\nconnections = "many"')
    assert error_of(tmp_path, text) == "FILE: smtp.connections: Input should be a valid integer"


@pytest.mark.parametrize(
    ("section", "line", "key", "problem"),
    [
        ("imap", 'port = "993"', "imap.port", "Input should be a valid integer"),
        ("imap", 'ssl = "yes"', "imap.ssl", "Input should be a valid boolean"),
        ("smtp", 'starttls = "true"', "smtp.starttls", "Input should be a valid boolean"),
    ],
)
def test_a_quoted_number_or_switch_is_named_not_converted(tmp_path: Path, section: str, line: str, key: str,
                                                          problem: str) -> None:
    text = MINIMAL.replace(f"[{section}]\n", f"[{section}]\n{line}\n")
    assert error_of(tmp_path, text) == f"FILE: {key}: {problem}"


@pytest.mark.parametrize("section", ["imap", "smtp"])
def test_ssl_and_starttls_together_are_refused(tmp_path: Path, section: str) -> None:
    text = MINIMAL.replace(f"[{section}]\n", f"[{section}]\nssl = true\nstarttls = true\n")
    assert "ssl and starttls: choose one" in error_of(tmp_path, text)


def test_two_password_sources_are_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("[smtp]\n", '[smtp]\npassword_env = "X"\npassword_file = "/run/x"\n')
    assert "password_env and password_file: give one" in error_of(tmp_path, text)


def test_both_servers_take_a_cafile(tmp_path: Path) -> None:
    text = MINIMAL.replace("[imap]\n", '[imap]\ncafile = "/etc/ca.pem"\n').replace(
        "[smtp]\n", '[smtp]\ncafile = "/etc/relay.pem"\n')
    path = tmp_path / "binrelay.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert config.imap is not None and str(config.imap.cafile) == "/etc/ca.pem"
    assert str(config.smtp.cafile) == "/etc/relay.pem"


def test_the_example_configurations_cafile_keys_exist(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    uncommented = "\n".join(line.removeprefix("# ") if line.startswith("# cafile") else line
                             for line in example.read_text(encoding="utf-8").splitlines())
    path = tmp_path / "binrelay.toml"
    path.write_text(uncommented, encoding="utf-8")
    config = load_config(path)
    assert config.imap is not None and config.imap.cafile is not None and config.smtp.cafile is not None


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace('[smtp]\nhost = "127.0.0.1"', '[smtp]\nhost = "127.0.0.1"\nconection = 4')
    assert error_of(tmp_path, text) == "FILE: smtp.conection: unknown key"


def test_inline_password_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace('password_env = "X_IMAP"', 'password = "geheim"')
    assert error_of(tmp_path, text) == (
        "FILE: imap.password: passwords may not be written in the configuration; "
        "use password_env or password_file"
    )


def test_inline_smtp_password_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace('[smtp]\nhost = "127.0.0.1"', '[smtp]\nhost = "127.0.0.1"\npassword = "x"')
    assert error_of(tmp_path, text).startswith("FILE: smtp.password: passwords may not be written")


def test_password_in_database_url_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + '\n[database]\nurl = "postgresql+psycopg://bin:geheim@db/bin"\n'
    assert error_of(tmp_path, text) == (
        "FILE: database.url: put no password in the database URL; use PGPASSWORD or ~/.pgpass"
    )


def test_bad_ward_slug(tmp_path: Path) -> None:
    text = MINIMAL.replace('slug = "maaspoort"', 'slug = "Maas Poort"')
    assert error_of(tmp_path, text) == (
        "FILE: wards[0].slug: 'Maas Poort' is not a slug (lowercase letters, digits and '-')"
    )


def test_unknown_ward_slug_in_partner(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[[partners]]\nkind = "police"\nname = "Politie"\ndomains = ["politie.nl"]\n'
        'ward_forward_to = { atlantis = "agent@politie.nl" }\n'
    )
    assert error_of(tmp_path, text) == (
        "FILE: partners[0].ward_forward_to.atlantis: unknown ward slug 'atlantis'"
    )


def test_duplicate_postcode_across_wards(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[wards]]\nslug = "empel"\nname = "Empel"\npostcodes = ["5235", "5221"]\n'
    assert error_of(tmp_path, text) == "FILE: wards[1].postcodes[1]: '5221' is already in ward 'maaspoort'"


def test_duplicate_street_across_wards(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[wards]]\nslug = "empel"\nname = "Empel"\nstreets = ["marathonloop"]\n'
    assert error_of(tmp_path, text) == (
        "FILE: wards[1].streets[0]: 'marathonloop' is already in ward 'maaspoort'"
    )


def test_duplicate_ward_slug(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[wards]]\nslug = "maaspoort"\nname = "Nog een"\n'
    assert error_of(tmp_path, text) == "FILE: wards[1].slug: duplicate ward slug 'maaspoort'"


def test_bad_postcode(tmp_path: Path) -> None:
    text = MINIMAL.replace('postcodes = ["5221"]', 'postcodes = ["52211"]')
    assert error_of(tmp_path, text) == "FILE: wards[0].postcodes: '52211' is not a 4-digit postcode prefix"


def test_bad_address(tmp_path: Path) -> None:
    text = MINIMAL.replace('address = "bin@example.org"', 'address = "bin.example.org"')
    assert error_of(tmp_path, text) == "FILE: network.address: 'bin.example.org' is not an email address"


def test_bad_language(tmp_path: Path) -> None:
    text = MINIMAL.replace('address = "bin@example.org"', 'address = "bin@example.org"\nlanguage = "de"')
    assert error_of(tmp_path, text) == "FILE: network.language: Input should be 'nl' or 'en'"


def test_toml_syntax_error(tmp_path: Path) -> None:
    assert error_of(tmp_path, MINIMAL + "\n[smtp\n").startswith("FILE: (syntax): ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml")
    assert str(caught.value).startswith(f"{tmp_path / 'nope.toml'}: (file): no such file (name another with")


def test_no_mail_source(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        '[imap]\nhost = "127.0.0.1"\nusername = "bin@example.org"\npassword_env = "X_IMAP"\n', ""
    )
    assert error_of(tmp_path, text) == "FILE: imap: required section is missing (or give [maildir], or enable [lmtp])"


def test_ssl_and_starttls_together(tmp_path: Path) -> None:
    text = MINIMAL.replace('[smtp]\nhost = "127.0.0.1"', '[smtp]\nhost = "127.0.0.1"\nssl = true\nstarttls = true')
    assert error_of(tmp_path, text) == (
        "FILE: smtp: ssl and starttls: choose one (ssl for port 465, starttls for 587)"
    )


def test_password_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.imap is not None
    assert config.imap.secret_problem() == "environment variable X_IMAP is not set"
    monkeypatch.setenv("X_IMAP", "s3cret")
    assert config.imap.password() == "s3cret"
    secret = tmp_path / "smtp.pw"
    secret.write_text("other\n")
    text = MINIMAL.replace('[smtp]\nhost = "127.0.0.1"', f'[smtp]\nhost = "127.0.0.1"\npassword_file = "{secret}"')
    assert load_config(write(tmp_path, text)).smtp.password() == "other"


def test_cli_exits_2_with_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('password_env = "X_IMAP"', 'password = "geheim"'))
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli.main", "--config", str(path), "init"],
        check=False, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{path}: imap.password: passwords may not be written in the configuration; "
        "use password_env or password_file"
    )


@pytest.mark.parametrize(("section", "line", "key"), [("rules", 'path = "/nonexistent/rules.toml"', "rules.path"),
                                                      ("templates", 'directory = "/nonexistent"', "templates.directory")])
def test_a_missing_rules_file_or_template_folder_is_named(tmp_path: Path, section: str, line: str, key: str) -> None:
    assert error_of(tmp_path, MINIMAL + f"\n[{section}]\n{line}\n").startswith(f"FILE: {key}: ")

