"""Reading option values: every bad value at once, each explained without its secrets."""

from __future__ import annotations

from oslo_config import cfg, iniparser

from migrator import uri
from migrator.conf.monitor_opts import default_opts
from migrator.conf.options import ALL_LIBVIRT_OPTS


def _fix_hint(opt: cfg.Opt) -> str:
    """How to write a valid value for ``opt``, for error messages."""
    typ = opt.type
    default = "" if opt.default is None else f" (default {opt.default})"
    choices = getattr(typ, "choices", None)
    if choices:
        return f"use one of: {', '.join(str(c) for c in choices)}{default}"
    if isinstance(typ, cfg.types.Boolean):
        return "use true or false, or remove the line for the default"
    if isinstance(typ, cfg.types.Integer):
        bounds = []
        if typ.min is not None:
            bounds.append(f"at least {typ.min}")
        if typ.max is not None:
            bounds.append(f"at most {typ.max}")
        return f"use a whole number{' ' + ' and '.join(bounds) if bounds else ''}{default}"
    if isinstance(typ, cfg.types.HostDomain):
        return "use a host name, an IPv4 or an IPv6 address"
    return "see the option's help in etc/migrator.conf.sample"


def _explain(group: str, opt: cfg.Opt, exc: Exception) -> str:
    """One line for a bad value, quoting it only when that is safe and short."""
    text = str(exc)
    where = ""
    if "detail='" in text:
        where = " in " + text.split("detail='", 1)[1].split("'", 1)[0]
    if opt.secret:  # its value may hold a password: not a character of it is shown
        reason = "the value is not valid (not shown: the option is secret)"
    else:
        reason = uri.mask_text(text.split("is not valid: ", 1)[-1])
        if len(reason) > 200:  # a huge bad value must not come back whole
            reason = reason[:150] + f"... ({len(reason)} characters)"
    return f"[{group}] {opt.dest}{where}: {reason}; {_fix_hint(opt)}"


def _explain_dollar(group: str, opt: cfg.Opt, exc: Exception) -> str:
    """oslo.config reads ``$name`` in a value as a reference to another option."""
    # oslo's message names the text after the '$': part of a password, for a secret option
    detail = "" if opt.secret else f" ({uri.mask_text(str(exc))[:120]})"
    return (
        f"[{group}] {opt.dest}: the value contains '$', which oslo.config reads as a "
        f"reference to another option{detail}; write '$$' for a literal '$'"
    )


def describe_parse_error(exc: cfg.ConfigFileParseError) -> str:
    """The file, line and reason of an ini syntax error, without the line itself.

    oslo.config quotes the offending line, which may be a credential (a
    ``live_migration_uri`` continued on an indented line, say); the line
    number is enough to find it.
    """
    cause = exc.__context__
    if isinstance(cause, iniparser.ParseError):
        return (f"config file {exc.config_file} near line {cause.lineno} is not valid ini: "
                f"{cause.msg}")
    return f"config file {exc.config_file} is not a valid ini file"


def read_values(conf: cfg.ConfigOpts) -> dict[str, object]:
    """Every ``[libvirt]`` value, or :class:`ConfigError` with one line per bad value.

    oslo.config only validates a value when it is read; reading them all here
    reports every problem at once instead of the first one mid-migration.
    """
    from migrator import exception

    values: dict[str, object] = {}
    problems: list[str] = []
    for group, opts in ((conf.libvirt, ALL_LIBVIRT_OPTS), (conf, default_opts)):
        name = "libvirt" if group is conf.libvirt else "DEFAULT"
        for opt in opts:
            try:
                values[opt.dest] = getattr(group, opt.dest)
                if name == "libvirt" and values[opt.dest] is not None:
                    # the service's own option (Nova's) may allow values that break a
                    # migration (a monitor interval of 0): migrator's bounds apply
                    opt.type(values[opt.dest])
            except (cfg.ConfigFileValueError, ValueError) as exc:
                problems.append(_explain(name, opt, exc))
            except (cfg.TemplateSubstitutionError, cfg.NoSuchOptError) as exc:
                problems.append(_explain_dollar(name, opt, exc))
    if problems:
        raise exception.ConfigError(problems)
    return values


def load(conf: cfg.ConfigOpts):
    """(flags.Options, virt_type, all values) from a registered, parsed ``conf``.

    Raises :class:`~migrator.exception.ConfigError` listing every bad value.
    """
    from migrator import flags

    values = read_values(conf)
    return flags.Options.from_values(values), str(values["virt_type"]), values
