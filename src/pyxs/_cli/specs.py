"""The subcommands' options and help texts (one :class:`~.options.Spec` each)."""

from __future__ import annotations

from .options import REQUIRED, Opt, Spec

__all__ = ["SPECS"]


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("not a whole number") from None


JSON = Opt(None, "json", "json", "print JSON instead (see 'JSON output' below)")

JSON_NOTE = """\
In JSON, a value is {"value": TEXT} when its bytes are valid UTF-8, else
{"value_base64": BASE64}; permissions are lists such as ["n0", "r5"]. A command
that fails prints no JSON, only its error."""

ESCAPES = """\
Values are printed escaped as xenstore-read does: printable ASCII as is, \\t \\n \\r
and \\\\ as such, bytes below 8 in octal (\\001), every other byte in hex (\\x1f)."""

SPECS: dict[str, Spec] = {}


def _add(spec: Spec) -> None:
    SPECS[spec.name] = spec


_add(
    Spec(
        "read",
        "read the values of XenStore paths (xenstore-read)",
        "key [...]",
        "Print the value of each KEY, one per line. With several keys, all are "
        "read in one transaction; the first that fails stops the command.\n\n" + ESCAPES,
        (
            Opt("p", "prefix", "prefix", 'print "KEY: " before each value'),
            Opt("R", "raw", "raw", "print the raw bytes: no escaping, no newline"),
            JSON,
        ),
        1,
        replaces="xenstore-read",
        epilog='JSON output: [{"path": KEY, "value": ...}, ...]\n' + JSON_NOTE,
    )
)
_add(
    Spec(
        "write",
        "write values to XenStore paths (xenstore-write)",
        "key value [...]",
        "Write each VALUE to its KEY, creating missing parents. Several pairs are "
        "written in one transaction.\n\n"
        "VALUE is unescaped as xenstore-write does: \\t \\n \\r \\\\, \\xNN (hex), "
        "\\NNN (octal); a backslash before any other character is dropped.",
        (Opt("R", "raw", "raw", "write VALUE as given, without unescaping"),),
        2,
        replaces="xenstore-write",
    )
)
_add(
    Spec(
        "rm",
        "remove XenStore nodes and their subtrees (xenstore-rm)",
        "key [...]",
        "Remove each KEY with everything below it, in one transaction. Removing a "
        "missing node whose parent exists succeeds.",
        (
            Opt(
                "t",
                "tidy",
                "tidy",
                "then remove each parent left with an empty value and no children",
            ),
        ),
        1,
        replaces="xenstore-rm",
    )
)
_add(
    Spec(
        "exists",
        "test whether XenStore paths exist (xenstore-exists)",
        "key [...]",
        "Exit with status 0 when every KEY exists, 1 when one does not; print "
        "nothing (except when XenStore cannot tell, e.g. permission denied: status 3).",
        (),
        1,
        replaces="xenstore-exists",
    )
)
_add(
    Spec(
        "list",
        "list the children of XenStore nodes (xenstore-list)",
        "key [...]",
        "Print the names of the children of each KEY, one per line, in creation order.",
        (
            Opt("p", "prefix", "prefix", 'print "KEY/" before each name'),
            JSON,
        ),
        1,
        replaces="xenstore-list",
        epilog='JSON output: [{"path": KEY, "children": [NAME, ...]}, ...]',
    )
)
_add(
    Spec(
        "ls",
        "show XenStore subtrees with values (xenstore-ls)",
        "[path ...]",
        "Print the tree under each PATH (default /), depth first, one node per line "
        '("name = \\"value\\""), indented by one space per level. Long lines are cut '
        "to the terminal's width (80 columns when not a terminal). Requests are "
        "pipelined, so large trees list fast.\n\n" + ESCAPES,
        (
            Opt("f", "flat", "flat", "print full paths instead of indented names"),
            Opt("p", "prefix", "prefix", "also print each node's permissions"),
            JSON,
        ),
        0,
        replaces="xenstore-ls",
        epilog='JSON output: [{"path": PATH, "value": ...}, ...], depth first; with -p,\n'
        'each also has "perms": [...]. A node that could not be read (removed during\n'
        'the walk) has "value": null and "error": REASON; likewise "perms": null and\n'
        '"perms_error": REASON.\n' + JSON_NOTE,
    )
)
_add(
    Spec(
        "chmod",
        "set the permissions of XenStore nodes (xenstore-chmod)",
        "key mode [mode ...]",
        "Set KEY's permission list. Each MODE is a letter and a domain id: n (none), "
        "r (read), w (write), b (both), e.g. n0 r5. The first MODE names the owner "
        "(full access) and gives the access of every domain not listed.",
        (
            Opt("u", "upto", "upto", "also set them on every parent of KEY (not on /)"),
            Opt("r", "recurse", "recurse", "also set them on every node below KEY"),
        ),
        1,
        replaces="xenstore-chmod",
    )
)
_add(
    Spec(
        "watch",
        "print the paths that change under XenStore nodes (xenstore-watch)",
        "key [...]",
        "Watch each KEY and print the path of every event, starting with the one "
        "each new watch fires at once. Runs until interrupted or NR events.",
        (
            Opt(
                "n",
                "number",
                "number",
                "stop after NR events (the initial ones count)",
                REQUIRED,
                "NR",
                _count,
            ),
            Opt("T", "timestamp", "timestamp", "print the local time (ISO 8601) first"),
            Opt(
                "V",
                "value",
                "value",
                'print the new value too: PATH = "VALUE", or PATH (deleted)',
            ),
            Opt(None, "json", "json", "print one JSON object per event"),
        ),
        1,
        replaces="xenstore-watch",
        epilog='JSON output: one line per event: {"path": ..., "token": ..., '
        '["time": ...,] ["value": ...]}',
    )
)
_add(
    Spec(
        "mkdir",
        "create XenStore nodes (empty values; existing ones are left alone)",
        "key [...]",
        "Create each KEY and its missing parents. An existing node keeps its value. "
        "Several keys are created in one transaction.",
        (),
        1,
    )
)
_add(
    Spec(
        "perms",
        "print the permissions of XenStore nodes",
        "key [...]",
        "Print the permission list of each KEY on one line, in the form chmod takes "
        "(owner first): n0 r5",
        (
            Opt("p", "prefix", "prefix", 'print "KEY: " first'),
            JSON,
        ),
        1,
        epilog='JSON output: [{"path": KEY, "perms": ["n0", "r5"]}, ...]',
    )
)
_add(
    Spec(
        "dump",
        "save a subtree (values and permissions) to a file",
        "[path]",
        "Write the tree under PATH (default /), PATH included, to FILE or stdout in "
        "the pyxs dump format, which 'pyxs restore' reads back exactly: binary "
        "values, empty values, permissions and the order of children included.",
        (
            Opt("o", "output", "output", "write to FILE instead of stdout", REQUIRED, "FILE"),
            Opt(None, "no-progress", "no_progress", "no progress bar on a terminal"),
        ),
        0,
        1,
        epilog="""\
Dump format (JSON Lines, UTF-8): a header line, then one line per node,
depth first, parents before children, children in creation order:
  {"format": "pyxs-dump", "version": 1, "root": "/vm"}
  {"path": "", "value": "", "perms": ["n0"]}
  {"path": "name", "value": "guest", "perms": ["n0", "r5"]}
  {"path": "blob", "value_base64": "AAEC", "perms": ["n0"]}
"path" is relative to the root ("" is the root itself); "value" holds values
that are valid UTF-8, "value_base64" all others.""",
    )
)
_add(
    Spec(
        "restore",
        "load a subtree saved by 'pyxs dump'",
        "file [path]",
        "Write every node of FILE ('-' for stdin) under PATH (default: the root the "
        "dump was taken from), with its value and permissions, in the dump's order "
        "(so children keep their order). Nodes not in the dump are left alone "
        "unless --replace.",
        (
            Opt(None, "replace", "replace", "remove PATH first, so it ends up exactly as dumped"),
            Opt(None, "no-perms", "no_perms", "do not set permissions (nodes inherit them)"),
            Opt(None, "no-progress", "no_progress", "no progress bar on a terminal"),
        ),
        1,
        2,
    )
)
