"""The deprecated flag lists: each applies to its kind of migration, and every fix hint works.

Nova before Newton used ``live_migration_flag`` for migrations that copy no disks and
``block_migration_flag`` for block migrations, and shipped TUNNELLED in both.  A hint in a
refusal ("remove TUNNELLED from ...", "set live_migration_tunnelled = false") is applied
to the options by :func:`apply_fix` and must make that refusal go away.
"""

from __future__ import annotations

import itertools
import re

import pytest

from migrator import constants, exception
from migrator.flags import HostFacts, MigrationFacts, Options, check_options, plan

HOST = HostFacts("kvm", (11, 0, 0), (10, 1, 0))
# Nova's pre-Newton defaults
NOVA_LIVE = ("VIR_MIGRATE_UNDEFINE_SOURCE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_LIVE",
             "VIR_MIGRATE_TUNNELLED")
NOVA_BLOCK = NOVA_LIVE + ("VIR_MIGRATE_NON_SHARED_INC",)
PLAIN = MigrationFacts(dest="compute-2", inbound_addr="10.1.0.2")
BLOCK = MigrationFacts(dest="compute-2", inbound_addr="10.1.0.2", block_migration=True,
                       disks=("vda",))
_REMOVE = re.compile(r"remove TUNNELLED from (live_migration_flag|block_migration_flag)")


def apply_fix(options: Options, message: str) -> Options:
    """The options after doing what ``message`` says; fails if it says nothing doable."""
    if "set live_migration_tunnelled = false" in message:
        return Options(**{**options.__dict__, "tunnelled": False})
    found = _REMOVE.search(message)
    assert found, f"no fix hint in: {message}"
    field = {"live_migration_flag": "legacy_live_flags",
             "block_migration_flag": "legacy_block_flags"}[found.group(1)]
    kept = tuple(n for n in getattr(options, field) if not n.upper().endswith("TUNNELLED"))
    return Options(**{**options.__dict__, field: kept})


def outcome(options: Options, migration: MigrationFacts) -> str | None:
    """None when planned, else the (first) refusal."""
    try:
        plan(options, HOST, migration)
    except exception.ConfigError as exc:
        return exc.problems[0]
    except exception.MigrationRefused as exc:
        return str(exc)
    return None


def test_block_flag_tunnelled_leaves_other_migrations_alone():
    options = Options(legacy_block_flags=NOVA_BLOCK)
    p = plan(options, HOST, PLAIN)
    assert not p.tunnelled
    assert p.migrate_uri == "tcp://10.1.0.2" and p.params["migrate_uri"] == "tcp://10.1.0.2"
    (note,) = check_options(options, HOST)
    assert "refuses every block migration" in note.reason and note.warning


def test_block_flag_tunnelled_refuses_block_migrations_with_a_fix_that_works():
    options = Options(legacy_block_flags=NOVA_BLOCK)
    refusal = outcome(options, BLOCK)
    assert refusal and "TUNNELLED in block_migration_flag" in refusal
    assert "remove TUNNELLED from block_migration_flag" in refusal
    fixed = apply_fix(options, refusal)
    p = plan(fixed, HOST, BLOCK)
    assert not p.tunnelled and p.has(constants.VIR_MIGRATE_NON_SHARED_INC)


def test_nova_pre_newton_defaults():
    options = Options(legacy_live_flags=NOVA_LIVE, legacy_block_flags=NOVA_BLOCK)
    p = plan(options, HOST, PLAIN)
    assert p.tunnelled and p.migrate_uri is None
    assert "TUNNELLED in live_migration_flag" in next(
        d.reason for d in p.decisions if d.item == "VIR_MIGRATE_TUNNELLED")
    fixed = apply_fix(options, outcome(options, BLOCK))
    assert plan(fixed, HOST, PLAIN).tunnelled  # the live list still says so
    assert not plan(fixed, HOST, BLOCK).tunnelled


def test_live_flag_tunnelled_leaves_block_migrations_alone():
    p = plan(Options(legacy_live_flags=("TUNNELLED",)), HOST, BLOCK)
    assert not p.tunnelled and p.has(constants.VIR_MIGRATE_NON_SHARED_INC)


def test_explicit_option_wins_over_both_lists():
    options = Options(tunnelled=False, legacy_live_flags=NOVA_LIVE, legacy_block_flags=NOVA_BLOCK)
    assert not plan(options, HOST, PLAIN).tunnelled
    assert not plan(options, HOST, BLOCK).tunnelled
    notes = check_options(options, HOST)
    assert all("is set and wins" in n.reason for n in notes)


def test_live_flag_translated():
    options = Options(legacy_live_flags=(
        "VIR_MIGRATE_UNDEFINE_SOURCE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_LIVE",
        "VIR_MIGRATE_TUNNELLED", "VIR_MIGRATE_COMPRESSED", "VIR_MIGRATE_UNSAFE"))
    p = plan(options, HOST, MigrationFacts(dest="compute-2"))
    assert p.tunnelled and p.has(constants.VIR_MIGRATE_COMPRESSED)
    assert not p.has(constants.VIR_MIGRATE_UNSAFE)
    (warning,) = [w for w in p.warnings if "live_migration_flag" in w]
    assert "live_migration_with_native_tls = true" in warning
    assert "live_migration_tunnelled = true (block migrations are then refused" in warning
    assert "live_migration_extra_flags = COMPRESSED (which applies to every migration)" in warning
    assert "UNSAFE dropped" in warning


@pytest.mark.parametrize("field,kind,other", [
    ("legacy_live_flags", PLAIN, BLOCK), ("legacy_block_flags", BLOCK, PLAIN)])
def test_extra_flags_of_a_list_apply_to_its_kind_only(field, kind, other):
    options = Options(**{field: ("VIR_MIGRATE_ABORT_ON_ERROR",)})
    assert plan(options, HOST, kind).has(constants.VIR_MIGRATE_ABORT_ON_ERROR)
    p = plan(options, HOST, other)
    assert not p.has(constants.VIR_MIGRATE_ABORT_ON_ERROR)
    note = next(d for d in p.decisions if d.item == "VIR_MIGRATE_ABORT_ON_ERROR")
    assert note.action == "omitted" and "applies to" in note.reason
    # live_migration_extra_flags applies to both
    both = Options(extra_flags=("ABORT_ON_ERROR",), **{field: ("ABORT_ON_ERROR",)})
    assert plan(both, HOST, other).has(constants.VIR_MIGRATE_ABORT_ON_ERROR)


def test_unknown_name_refused():
    with pytest.raises(exception.ConfigError, match="block_migration_flag"):
        check_options(Options(legacy_block_flags=("VIR_MIGRATE_WARP",)), HOST)


CASES = list(itertools.product(
    (None, True, False),  # live_migration_tunnelled
    (None, ("TUNNELLED",), NOVA_LIVE),  # live_migration_flag
    (None, ("TUNNELLED",), NOVA_BLOCK),  # block_migration_flag
    (False, True),  # native TLS
    (False, True),  # post-copy
    (1, 2),  # parallel connections
))


@pytest.mark.parametrize("tunnelled,live,block,tls,post_copy,parallel", CASES)
def test_every_tunnel_hint_works(tunnelled, live, block, tls, post_copy, parallel):
    """Whatever refuses a migration because of a tunnel, doing what it says removes it."""
    options = Options(tunnelled=tunnelled, legacy_live_flags=live, legacy_block_flags=block,
                      native_tls=tls, permit_post_copy=post_copy, parallel_connections=parallel)
    for migration in (PLAIN, BLOCK):
        current = options
        for _step in range(4):
            refusal = outcome(current, migration)
            if refusal is None:
                break
            assert "tunnel" in refusal.lower() or "TUNNELLED" in refusal, refusal
            fixed = apply_fix(current, refusal)
            assert outcome(fixed, migration) != refusal, f"the hint did not help: {refusal}"
            current = fixed
        assert outcome(current, migration) is None, (options, migration)
