"""``binrelay members``: CSV import with bad rows by line number, list, remove, export and erase."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from relay.cli.members import (
    members_erase,
    members_export,
    members_import,
    members_list,
    members_remove,
)
from relay.service.clock import FrozenClock
from relay.service.runtime import Runtime, build_runtime
from storage.models import AuditEvent, Delivery, Member, Message
from storage.outbox import enqueue_notice, mark_sent
from tests.test_membership import command, confirm_token, reply_to_confirmation, runtime
from tests.test_membership import members as all_members


def run_import(rt: Runtime, tmp_path: Path, text: str | bytes, name: str = "members.csv") -> tuple[int, str, str]:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    out, err = io.StringIO(), io.StringIO()
    code = members_import(rt, path, out, err)
    return code, out.getvalue(), err.getvalue()


def test_import_good_file(engine: Engine, clock: FrozenClock, tmp_path: Path) -> None:
    rt = runtime(engine, clock)
    code, out, err = run_import(rt, tmp_path, "email,name,ward\nJan@Example.NL,Jan Jansen,Maaspoort\n"
                                              "els@example.nl,,empel\n")
    assert (code, out.strip(), err) == (0, "2 added, 0 updated, 0 bad", "")
    members = all_members(rt)
    assert members["jan@example.nl"].name == "Jan Jansen" and members["jan@example.nl"].ward == "maaspoort"
    assert members["els@example.nl"].status == "active" and members["els@example.nl"].language == "nl"
    assert members["jan@example.nl"].unsubscribe_token != members["els@example.nl"].unsubscribe_token


def test_import_reports_bad_rows_by_line_and_imports_the_rest(engine: Engine, clock: FrozenClock,
                                                               tmp_path: Path) -> None:
    rt = runtime(engine, clock)
    text = ("\ufeffE-mail;Naam;Wijk;Postcode\n"      # BOM, ';' and Dutch column names
            "jan@example.nl;Jan;Maaspoort;5221 AB\n"   # 2 good
            "not-an-address;Kees;Empel;\n"             # 3 bad address
            "\n"                                       # 4 blank: skipped
            "els@example.nl;Els;Rosmalen;\n"           # 5 unknown ward
            "piet@example.nl;Piet\n"                   # 6 missing column
            "\"ria@example.nl\";\"Ria; de Boer\";;5235\n")  # 7 ward from the postcode, quoted ';'
    code, out, err = run_import(rt, tmp_path, text.encode("utf-8"))
    assert code == 1
    assert out.strip() == "2 added, 0 updated, 3 bad"
    lines = err.strip().splitlines()
    assert [line.split(": ", 1)[0].rsplit(":", 1)[1] for line in lines] == ["3", "5", "6"]
    assert "bad address 'not-an-address'" in lines[0]
    assert "unknown ward 'Rosmalen'" in lines[1]
    assert "missing column ward" in lines[2]
    members = all_members(rt)
    assert set(members) == {"jan@example.nl", "ria@example.nl"}
    assert members["jan@example.nl"].postcode == "5221AB"
    assert (members["ria@example.nl"].ward, members["ria@example.nl"].name) == ("empel", "Ria; de Boer")


def test_import_updates_and_keeps_unsubscribed_members_out(engine: Engine, clock: FrozenClock,
                                                           tmp_path: Path) -> None:
    rt = runtime(engine, clock)
    run_import(rt, tmp_path, "email,name,ward\njan@example.nl,Jan,Maaspoort\nels@example.nl,Els,Empel\n")
    token = all_members(rt)["jan@example.nl"].unsubscribe_token
    assert members_remove(rt, "els@example.nl", io.StringIO(), io.StringIO()) == 0
    code, out, _ = run_import(rt, tmp_path, "ward,email\nEmpel,jan@example.nl\nMaaspoort,els@example.nl\n")
    assert code == 0 and out.startswith("0 added, 2 updated, 0 bad")
    members = all_members(rt)
    jan, els = members["jan@example.nl"], members["els@example.nl"]
    assert (jan.ward, jan.name, jan.unsubscribe_token) == ("empel", "Jan", token)
    assert els.ward == "maaspoort" and els.status == "left"  # an import does not sign them up again


def test_import_without_header_is_refused(engine: Engine, clock: FrozenClock, tmp_path: Path) -> None:
    rt = runtime(engine, clock)
    code, out, err = run_import(rt, tmp_path, "jan@example.nl,Jan,Maaspoort\n")
    assert code == 2 and out == "" and "header line is required" in err
    code, _, err = run_import(rt, tmp_path, "email,name\njan@example.nl,Jan\n")
    assert code == 2 and "no column ward" in err
    assert all_members(rt) == {}


def test_import_50k_rows(engine: Engine, clock: FrozenClock, tmp_path: Path) -> None:
    rt = runtime(engine, clock)
    wards = ["Maaspoort", "Empel", "5223"]
    lines = ["email,name,ward"] + [f"member{i}@example.nl,Member {i},{wards[i % 3]}" for i in range(50_000)]
    lines[25_001] = "broken,Nobody,Empel"
    code, out, err = run_import(rt, tmp_path, "\n".join(lines) + "\n")
    assert code == 1 and out.strip() == "49999 added, 0 updated, 1 bad"
    assert err.strip().endswith(":25002: bad address 'broken'")
    with rt.sessions() as session:
        per_ward = dict(session.execute(select(Member.ward, func.count()).group_by(Member.ward)).all())
    assert per_ward == {"maaspoort": 16667, "empel": 16666, "den-bosch-oost": 16666}


def test_list_table_and_json(engine: Engine, clock: FrozenClock, tmp_path: Path) -> None:
    rt = runtime(engine, clock)
    run_import(rt, tmp_path, "email,name,ward\nb@example.nl,Bea,Empel\na@example.nl,Ann,Empel\n"
                             "c@example.nl,Cor,Maaspoort\n")
    out = io.StringIO()
    assert members_list(rt, "empel", True, out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["email"] for row in rows] == ["a@example.nl", "b@example.nl"]
    assert rows[0]["ward"] == "empel" and rows[0]["status"] == "active"
    out = io.StringIO()
    assert members_list(rt, None, False, out) == 0
    assert "c@example.nl" in out.getvalue() and out.getvalue().strip().endswith("3 members")
    err = io.StringIO()
    assert members_list(rt, "Atlantis", False, io.StringIO(), err) == 2 and "unknown ward" in err.getvalue()


def test_remove(engine: Engine, clock: FrozenClock, tmp_path: Path) -> None:
    rt = runtime(engine, clock)
    run_import(rt, tmp_path, "email,name,ward\njan@example.nl,Jan,Empel\n")
    out, err = io.StringIO(), io.StringIO()
    assert members_remove(rt, "JAN@example.nl", out, err) == 0
    assert all_members(rt)["jan@example.nl"].status == "left"
    assert members_remove(rt, "jan@example.nl", io.StringIO(), err) == 1 and "no active member" in err.getvalue()
    listed = io.StringIO()
    members_list(rt, None, True, listed)
    assert listed.getvalue() == ""


def test_export_and_erase(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    piet = "piet@example.net"
    command(rt, "subscribe", subject="AANMELDEN Empel", sender=piet)
    reply_to_confirmation(rt, confirm_token(rt, piet), sender=piet)
    command(rt, "subscribe", subject="AANMELDEN Empel", sender="other@example.net")
    with rt.sessions() as session, session.begin():  # the answers went out; one more notice still waits
        mark_sent(session, list(session.scalars(select(Delivery.id))), clock.now())
        enqueue_notice(session, recipient=piet, raw=b"x", purpose="test", now=clock.now())

    out = io.StringIO()
    assert members_export(rt, piet, out, io.StringIO()) == 0
    data = json.loads(out.getvalue())
    assert data["member"]["ward"] == "empel" and data["member"]["status"] == "active"
    assert len(data["confirmations"]) == 1 and data["confirmations"][0]["used_at"] is not None
    assert {d["purpose"] for d in data["deliveries"]} == {"member_confirm", "member_welcome", "test"}
    assert {e["action"] for e in data["audit_events"]} >= {"subscribe_requested", "member_joined"}

    out = io.StringIO()
    assert members_erase(rt, piet, out, io.StringIO()) == 0
    printed = out.getvalue()
    assert printed.startswith("erased piet@example.net:")
    for line in ("members: 1", "confirmations: 1", "deliveries.recipient: 3"):
        assert f"  {line}\n" in printed
    with rt.sessions() as session:
        assert session.scalars(select(Member).where(Member.email == piet)).first() is None
        recipients = list(session.scalars(select(Delivery.recipient)))
        assert piet not in recipients and "other@example.net" in recipients
        assert len(recipients) == 3  # the pending one to piet was dropped; two sent ones anonymised + other's
        assert all(raw is None for raw in session.scalars(select(Delivery.raw).where(Delivery.recipient != "other@example.net")))
        events = list(session.scalars(select(AuditEvent)))
        assert all(piet not in f"{e.actor} {e.detail}" for e in events)
        messages = list(session.scalars(select(Message).order_by(Message.id)))
        assert [m.from_address == "other@example.net" for m in messages] == [False, False, True]
        assert all(m.raw is None and m.body_text is None and m.purged_at == clock.now() for m in messages[:2])
        assert messages[2].raw is not None
    for row in all_members(rt).values():
        assert row.email != piet
    err = io.StringIO()
    assert members_export(rt, piet, io.StringIO(), err) == 1 and "nothing is kept" in err.getvalue()
    assert members_erase(rt, piet, io.StringIO(), io.StringIO()) == 1


def test_import_export_erase_on_both_backends(db_url: str, clock: FrozenClock, tmp_path: Path) -> None:
    from storage.db import make_engine, migrate
    from tests.test_membership import membership_config

    engine = make_engine(db_url)
    migrate(engine)
    try:
        rt = build_runtime(membership_config(), engine, clock)
        code, out, _ = run_import(rt, tmp_path, "email,name,ward\njan_1%@example.nl,Jan,Empel\n"
                                                "jan.1@example.nl,Jan Twee,Empel\n")
        assert code == 0 and out.startswith("2 added")
        with rt.sessions() as session, session.begin():
            enqueue_notice(session, recipient="jan_1%@example.nl", raw=b"x", purpose="test", now=clock.now())
            mark_sent(session, list(session.scalars(select(Delivery.id))), clock.now())
        assert members_remove(rt, "jan_1%@example.nl", io.StringIO(), io.StringIO()) == 0
        exported = io.StringIO()
        assert members_export(rt, "JAN_1%@example.nl", exported, io.StringIO()) == 0
        data = json.loads(exported.getvalue())
        assert data["member"]["status"] == "left" and [d["status"] for d in data["deliveries"]] == ["sent"]
        assert [e["action"] for e in data["audit_events"]] == ["member_removed"]
        assert members_erase(rt, "jan_1%@example.nl", io.StringIO(), io.StringIO()) == 0
        # LIKE wildcards in the address must not touch the look-alike address.
        assert set(all_members(rt)) == {"jan.1@example.nl"}
        with rt.sessions() as session:
            events = list(session.scalars(select(AuditEvent)))
            assert all("jan_1%" not in f"{e.actor} {e.detail}" for e in events)
    finally:
        engine.dispose()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only(engine: Engine, clock: FrozenClock, tmp_path: Path) -> None:
    rt = runtime(engine, clock)
    path = tmp_path / "many.csv"
    path.write_text("email,ward\n" + "".join(f"m{i}@example.nl,Empel\n" for i in range(6000)), encoding="utf-8")
    out, terminal = io.StringIO(), _Terminal()
    assert members_import(rt, path, out, terminal) == 0
    assert "importing members" in terminal.getvalue()
    assert out.getvalue().strip() == "6000 added, 0 updated, 0 bad"
    piped = io.StringIO()
    assert members_import(rt, path, io.StringIO(), piped) == 0
    assert piped.getvalue() == ""  # no bar in a pipe or a log


def test_binrelay_members_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from relay.cli.main import main

    url = f"sqlite:///{tmp_path / 'members.db'}"
    config_file = tmp_path / "binrelay.toml"
    config_file.write_text(
        '[network]\nname = "BIN Test"\naddress = "bin@example.org"\n'
        '[imap]\nhost = "127.0.0.1"\nusername = "bin@example.org"\npassword_env = "X_IMAP"\n'
        '[smtp]\nhost = "127.0.0.1"\n'
        f'[database]\nurl = "{url}"\n'
        '[[wards]]\nslug = "maaspoort"\nname = "Maaspoort"\npostcodes = ["5221"]\n',
        encoding="utf-8",
    )
    csv_file = tmp_path / "leden.csv"
    csv_file.write_text("email;naam;wijk\njan@example.nl;Jan;Maaspoort\nfout;Kees;Maaspoort\n", encoding="utf-8")
    run = ["--config", str(config_file), "members"]
    assert main([*run, "import", str(csv_file)]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == "1 added, 0 updated, 1 bad"
    assert f"{csv_file}:3: bad address 'fout'" in captured.err
    assert main([*run, "list", "--ward", "maaspoort", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["email"] == "jan@example.nl"
    assert main([*run, "export", "jan@example.nl"]) == 0
    assert json.loads(capsys.readouterr().out)["member"]["name"] == "Jan"
    assert main([*run, "remove", "jan@example.nl"]) == 0
    assert main([*run, "remove", "jan@example.nl"]) == 1
    assert main([*run, "erase", "jan@example.nl"]) == 0
    assert main([*run, "export", "jan@example.nl"]) == 1
    assert main([*run, "import", str(tmp_path / "missing.csv")]) == 2


def test_retention_erases_members_who_left_long_ago(engine: Engine, clock: FrozenClock) -> None:
    from relay.jobs.retention import purge

    rt = runtime(engine, clock)
    for who in ("piet@example.net", "stays@example.net"):
        command(rt, "subscribe", subject="AANMELDEN Empel", sender=who)
        reply_to_confirmation(rt, confirm_token(rt, who), sender=who)
    command(rt, "unsubscribe", subject="AFMELDEN", sender="piet@example.net")
    clock.advance(days=rt.config.retention.days - 1)
    purge(rt, clock.now())
    assert "piet@example.net" in all_members(rt)  # not yet
    clock.advance(days=2)
    stats = purge(rt, clock.now())
    assert stats.former_members == 1
    assert set(all_members(rt)) == {"stays@example.net"}
    with rt.sessions() as session:
        for event in session.scalars(select(AuditEvent)):
            assert "piet@example.net" not in f"{event.actor} {event.detail}"


def test_members_import_help_describes_the_csv_format(capsys: pytest.CaptureFixture[str]) -> None:
    from relay.cli.main import main

    with pytest.raises(SystemExit):
        main(["members", "import", "--help"])
    out = capsys.readouterr().out
    for part in ("email", "ward", "required", "postcode", "email,name,ward,postcode"):
        assert part in out
