"""Configuration: one TOML file loaded once into typed, validated models.

Every problem is reported as one line naming the file, the key and the problem
(``ConfigError``); the command line prints it and exits 2.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rules.directory import Directory, Partner, Ward
from rules.sender import Trust

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
POSTCODE_PATTERN = re.compile(r"^[1-9][0-9]{3}$")
DEFAULT_CONFIG_NAME = "binrelay.toml"


class ConfigError(Exception):
    """A configuration problem: ``str()`` is ``"<file>: <key>: <problem>"``."""

    def __init__(self, file: str | os.PathLike[str], key: str, problem: str) -> None:
        self.file = str(file)
        self.key = key
        self.problem = problem
        super().__init__(f"{self.file}: {key}: {problem}")


class _Section(BaseModel):
    # Unknown keys are refused: a typo must not silently fall back to a default. Types are strict:
    # port = "993" or ssl = "yes" is a mistake to name, not a value to guess at.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# A path is written as a string in TOML: the one conversion strict types allow.
PathValue = Annotated[Path, Field(strict=False)]


def _lower_addresses(values: list[str]) -> list[str]:
    cleaned = []
    for value in values:
        address = value.strip().lower()
        if "@" not in address or address.startswith("@") or address.endswith("@"):
            raise ValueError(f"{value!r} is not an email address")
        cleaned.append(address)
    return cleaned


class SecretSource(_Section):
    """A password read from an environment variable or a file, never inline."""

    password_env: str | None = None
    password_file: PathValue | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretSource:
        if self.password_env and self.password_file:
            raise ValueError("password_env and password_file: give one (which would win is not obvious)")
        return self

    def password(self) -> str | None:
        """The secret, read now (so a rotated file is picked up on reload)."""
        if self.password_env:
            return os.environ.get(self.password_env)
        if self.password_file:
            return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        return None

    def secret_problem(self) -> str | None:
        """Why the secret cannot be read, or None when it can."""
        if self.password_env and self.password_env not in os.environ:
            return f"environment variable {self.password_env} is not set"
        if self.password_file and not self.password_file.is_file():
            return f"password_file {self.password_file} does not exist"
        return None


class NetworkConfig(_Section):
    name: str
    address: str
    language: Literal["nl", "en"] = "nl"
    coordinators: list[str] = Field(default_factory=list)  # network-wide
    # Where the monthly report goes (the user group); coordinators are added.
    report_recipients: list[str] = Field(default_factory=list)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _lower_addresses([value])[0]

    @field_validator("coordinators", "report_recipients")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        return _lower_addresses(values)

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]

    @property
    def local_part(self) -> str:
        return self.address.rsplit("@", 1)[0]


class _TlsEndpoint(SecretSource):
    """A server reached with implicit TLS, STARTTLS or (loopback only) plain."""

    host: str
    port: int
    ssl: bool
    starttls: bool
    # Extra CA certificates to trust (a private server's own certificate).
    cafile: PathValue | None = None

    @model_validator(mode="after")
    def _tls_mode(self) -> _TlsEndpoint:
        if self.ssl and self.starttls:
            raise ValueError(f"ssl and starttls: choose one (ssl for port {self.implicit_tls_port}, "
                             f"starttls for {self.starttls_port})")
        return self

    implicit_tls_port: ClassVar[int] = 993
    starttls_port: ClassVar[int] = 143


class ImapConfig(_TlsEndpoint):
    port: int = 993
    ssl: bool = True
    starttls: bool = False
    username: str
    mailbox: str = "INBOX"
    processed_folder: str = "Verwerkt"
    # IDLE is renewed well inside the 29-minute limit of RFC 2177.
    idle_renew_seconds: int = Field(default=600, ge=10, le=1500)
    # While idling, the mailbox is searched again this often: Courier and Cyrus announce new mail
    # only when they next look (about a minute); set it to idle_renew_seconds to trust the server.
    idle_recheck_seconds: float = Field(default=3.0, ge=0.5, le=1500)
    # Used when the server offers no IDLE.
    poll_seconds: int = Field(default=60, ge=1)
    timeout_seconds: float = Field(default=60.0, gt=0)
    fetch_batch: int = Field(default=200, ge=1)


class SmtpConfig(_TlsEndpoint):
    port: int = 587
    ssl: bool = False
    starttls: bool = True
    username: str | None = None
    connections: int = Field(default=4, ge=1, le=64)
    timeout_seconds: float = Field(default=60.0, gt=0)

    implicit_tls_port: ClassVar[int] = 465
    starttls_port: ClassVar[int] = 587


class MaildirConfig(_Section):
    path: PathValue
    # Where processed messages go; relative names are siblings of ``path``. Without it they go to the
    # Maildir++ folder ``.Verwerkt`` inside ``path``: stored mail is never deleted unless asked.
    processed: PathValue | None = None
    # Delete each message once stored instead (the database keeps it until retention purges it).
    delete_processed: bool = False

    @model_validator(mode="after")
    def _one_way_out(self) -> MaildirConfig:
        if self.delete_processed and self.processed is not None:
            raise ValueError("processed and delete_processed: choose one (move the mail there, or delete it)")
        return self


class DatabaseConfig(_Section):
    url: str = "sqlite:////var/lib/binrelay/binrelay.db"

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("only sqlite:/// and postgresql+psycopg:// URLs are supported")
        if "@" in value.split("//", 1)[-1].split("/", 1)[0] and ":" in value.split("//", 1)[-1].split("@")[0]:
            raise ValueError(
                "put no password in the database URL; use PGPASSWORD or ~/.pgpass"
            )
        return value


class WardConfig(_Section):
    slug: str
    name: str
    aliases: list[str] = Field(default_factory=list)
    postcodes: list[str] = Field(default_factory=list)
    streets: list[str] = Field(default_factory=list)
    coordinators: list[str] = Field(default_factory=list)

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a slug (lowercase letters, digits and '-')")
        return value

    @field_validator("postcodes")
    @classmethod
    def _postcodes(cls, values: list[str]) -> list[str]:
        for value in values:
            if not POSTCODE_PATTERN.match(value):
                raise ValueError(f"{value!r} is not a 4-digit postcode prefix")
        return values

    @field_validator("coordinators")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        return _lower_addresses(values)


class PartnerConfig(_Section):
    kind: Literal["police", "municipality"]
    name: str
    domains: list[str] = Field(default_factory=list)
    addresses: list[str] = Field(default_factory=list)
    forward_to: str | None = None
    # Optional per-ward addresses (e.g. the wijkagent of each ward): slug -> address.
    ward_forward_to: dict[str, str] = Field(default_factory=dict)

    @field_validator("domains")
    @classmethod
    def _domains(cls, values: list[str]) -> list[str]:
        return [value.strip().lower().lstrip("@") for value in values]

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        return _lower_addresses(values)

    @field_validator("forward_to")
    @classmethod
    def _forward_to(cls, value: str | None) -> str | None:
        return None if value is None else _lower_addresses([value])[0]


class ApprovalConfig(_Section):
    # Remind the ward's coordinators after this long without a decision.
    remind_urgent_minutes: int = Field(default=30, ge=1)
    remind_normal_minutes: int = Field(default=240, ge=1)
    # Escalate to the network-wide coordinators after this long.
    escalate_urgent_minutes: int = Field(default=60, ge=1)
    escalate_normal_minutes: int = Field(default=480, ge=1)
    # Pending items expire (and the coordinators are told) after this long.
    expire_hours: int = Field(default=48, ge=1)
    # The key for approval tokens' HMAC; read from this environment variable
    # or file. Without one, tokens are random (secrets) and stored hashed.
    token_key_env: str | None = "BINRELAY_TOKEN_KEY"
    token_key_file: PathValue | None = None
    # Without a configured key, create one in a 0600 file next to the SQLite
    # database (or in the state directory), so reminders repeat the same token.
    token_key_auto: bool = True
    # Acknowledge residents' reports (with the 112 reminder).
    acknowledge_reports: bool = True
    # Reports this close in time, of the same category and ward, and at least
    # this alike (0..1, trigram cosine) are merged into one item; 0 minutes: never.
    merge_window_minutes: int = Field(default=120, ge=0)
    merge_similarity: float = Field(default=0.38, gt=0, le=1)


class DeliveryConfig(_Section):
    # Attachments in residents' reports are dropped by default (privacy).
    resident_attachments: bool = False
    # Hard bounces (5xx, or a failure report to a signed return path; at most one a
    # day) after which a member's alerts are paused; the member is warned one before.
    bounce_disable_threshold: int = Field(default=3, ge=1)
    # Days without a bounce after which the count starts again.
    bounce_decay_days: int = Field(default=7, ge=1)
    # Transient failures (4xx, connection errors) are retried this many times.
    max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = Field(default=60.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    batch_size: int = Field(default=500, ge=1)
    # A claimed batch belongs to its process this long; then (after a crash)
    # another process may take it over. Far longer than one batch takes.
    claim_lease_seconds: float = Field(default=300.0, gt=0)
    # Members who chose DAGELIJKS get one digest of non-urgent alerts a day, at
    # this hour in this time zone (urgent alerts always go out at once).
    digest_hour: int = Field(default=18, ge=0, le=23)
    timezone: str = "Europe/Amsterdam"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. 'Europe/Amsterdam')") from None
        return value


class LimitsConfig(_Section):
    # Larger messages are stored (truncated text) and held, never forwarded.
    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # Headers larger than this are not read for a sender: the message is held as malformed.
    max_header_bytes: int = Field(default=256 * 1024, ge=8 * 1024)
    # Messages per sender per hour before the sender is rate-limited.
    sender_messages_per_hour: int = Field(default=20, ge=1)
    # Confirmation mails (subscriptions, changes from unverified senders) per address per
    # day and for the whole network per hour: forged requests cannot turn binrelay into a mail cannon.
    confirmations_per_day: int = Field(default=3, ge=1)
    confirmations_per_hour: int = Field(default=30, ge=1)
    # Hours a subscription confirmation stays valid.
    confirmation_hours: int = Field(default=72, ge=1)


class SecurityConfig(_Section):
    # Authentication-Results headers count only when added by one of these authserv-ids: your
    # receiving server's (RFC 8601; it removes forged ones with its own id). Empty: the network
    # address's domain and its subdomains (e.g. "mx.bin-denbosch.nl").
    authserv_ids: list[str] = Field(default_factory=list)
    # Mail from a partner's domain or address with no verdict at all counts as that partner
    # (marked "not verified" for the coordinator). A failed verdict never does.
    partner_without_verdict: bool = True

    @field_validator("authserv_ids")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [value.strip().lower().rstrip(".") for value in values if value.strip()]


def _existing_file(value: Path) -> Path:
    if not value.is_file():
        raise ValueError(f"{value} does not exist or is not a file")
    return value


def _existing_folder(value: Path) -> Path:
    if not value.is_dir():
        raise ValueError(f"{value} does not exist or is not a folder")
    return value


ExistingFile = Annotated[PathValue, AfterValidator(_existing_file)]
ExistingFolder = Annotated[PathValue, AfterValidator(_existing_folder)]


class RulesConfig(_Section):
    # An operator's own rule file; extends or overrides the shipped defaults.
    path: ExistingFile | None = None


class RetentionConfig(_Section):
    # Raw messages and bodies are purged after this many days; statistics stay.
    days: int = Field(default=90, ge=1)


class TemplatesConfig(_Section):
    # A folder with templates that override the shipped ones (same names).
    directory: ExistingFolder | None = None


class AdviceConfig(_Section):
    # The standing advice at the end of every alert; set your country's numbers.
    emergency: str = "112"
    police: str = "0900-8844"
    anonymous_name: str = "Meld Misdaad Anoniem"
    anonymous: str = "0800-7000"


class LmtpConfig(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=2424, ge=1, le=65535)


class Config(_Section):
    network: NetworkConfig
    imap: ImapConfig | None = None
    maildir: MaildirConfig | None = None
    smtp: SmtpConfig
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    wards: list[WardConfig] = Field(default_factory=list)
    partners: list[PartnerConfig] = Field(default_factory=list)
    approval: ApprovalConfig = Field(default_factory=ApprovalConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    templates: TemplatesConfig = Field(default_factory=TemplatesConfig)
    lmtp: LmtpConfig = Field(default_factory=LmtpConfig)
    advice: AdviceConfig = Field(default_factory=AdviceConfig)

    # Where the file was read from (not a TOML key): for messages and relative paths.
    source_path: Path | None = Field(default=None, exclude=True)

    def ward(self, slug: str) -> WardConfig | None:
        return next((ward for ward in self.wards if ward.slug == slug), None)

    @property
    def ward_slugs(self) -> list[str]:
        return [ward.slug for ward in self.wards]

    def coordinators_of(self, slug: str) -> list[str]:
        ward = self.ward(slug)
        return list(ward.coordinators) if ward else []

    def is_coordinator(self, address: str, slug: str | None = None) -> bool:
        """A network-wide coordinator, or (with ``slug``) one of that ward."""
        address = address.lower()
        if address in self.network.coordinators:
            return True
        if slug is None:
            return any(address in ward.coordinators for ward in self.wards)
        return address in self.coordinators_of(slug)

    def partner(self, kind: str) -> PartnerConfig | None:
        return next((partner for partner in self.partners if partner.kind == kind), None)

    def directory(self) -> Directory:
        """What the rules need to know of the network, as plain data."""
        return Directory(
            name=self.network.name,
            address=self.network.address,
            coordinators=tuple(self.network.coordinators),
            wards=tuple(
                Ward(w.slug, w.name, tuple(w.aliases), tuple(w.postcodes), tuple(w.streets), tuple(w.coordinators))
                for w in self.wards
            ),
            partners=tuple(Partner(p.kind, p.name, tuple(p.domains), tuple(p.addresses)) for p in self.partners),
            trust=Trust(tuple(self.security.authserv_ids), self.network.domain, self.limits.max_header_bytes),
            partner_without_verdict=self.security.partner_without_verdict,
        )


def _key_path(location: tuple[int | str, ...]) -> str:
    """pydantic's error location as a TOML key path: ``wards[0].slug``."""
    parts: list[str] = []
    for item in location:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(item)
    return ".".join(parts) or "(top level)"


def _problem(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _refuse_duplicates(config: Config, file: str) -> None:
    """A postcode or street may belong to one ward only."""
    for attribute in ("postcodes", "streets"):
        owner: dict[str, int] = {}
        for index, ward in enumerate(config.wards):
            for position, value in enumerate(getattr(ward, attribute)):
                key = value.strip().lower()
                if key in owner and owner[key] != index:
                    first = config.wards[owner[key]].slug
                    raise ConfigError(
                        file,
                        f"wards[{index}].{attribute}[{position}]",
                        f"{value!r} is already in ward {first!r}",
                    )
                owner[key] = index
    slugs: dict[str, int] = {}
    for index, ward in enumerate(config.wards):
        if ward.slug in slugs:
            raise ConfigError(file, f"wards[{index}].slug", f"duplicate ward slug {ward.slug!r}")
        slugs[ward.slug] = index


def _refuse_unknown_slugs(config: Config, file: str) -> None:
    known = set(config.ward_slugs)
    for index, partner in enumerate(config.partners):
        for slug in partner.ward_forward_to:
            if slug not in known:
                raise ConfigError(
                    file, f"partners[{index}].ward_forward_to.{slug}", f"unknown ward slug {slug!r}"
                )


def _refuse_missing_source(config: Config, file: str) -> None:
    if config.imap is None and config.maildir is None and not config.lmtp.enabled:
        raise ConfigError(file, "imap", "required section is missing (or give [maildir], or enable [lmtp])")


def _refuse_inline_passwords(data: dict[str, Any], file: str) -> None:
    for section in ("imap", "smtp"):
        if isinstance(data.get(section), dict) and "password" in data[section]:
            raise ConfigError(
                file,
                f"{section}.password",
                "passwords may not be written in the configuration; "
                "use password_env or password_file",
            )


def parse_config(data: dict[str, Any], file: str | os.PathLike[str] = "<config>") -> Config:
    """Validate an already-parsed TOML document."""
    name = str(file)
    _refuse_inline_passwords(data, name)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(name, _key_path(first["loc"]), _problem(first)) from None
    _refuse_missing_source(config, name)
    _refuse_duplicates(config, name)
    _refuse_unknown_slugs(config, name)
    return config.model_copy(update={"source_path": Path(file)})


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the TOML file at ``path``."""
    file = Path(path)
    try:
        text = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, "(file)", "no such file (name another with --config FILE or BINRELAY_CONFIG; "
                          "config.example.toml shows every key)") from None
    except OSError as exc:
        raise ConfigError(file, "(file)", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, "(file)", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "(syntax)", str(exc)) from None
    return parse_config(data, file)


def default_config_path() -> Path:
    """``$BINRELAY_CONFIG``, then ``./binrelay.toml``."""
    return Path(os.environ.get("BINRELAY_CONFIG") or DEFAULT_CONFIG_NAME)
