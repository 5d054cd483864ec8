"""The deploy command: point an alias at a version, roll it back, list the model store, or push a
local bundle into the shared one.

The command object is shared by ``deploy_model.py`` and the package's click group.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from crypto_predictor.config import Config
from crypto_predictor.errors import CryptoPredictorError
from crypto_predictor.registry.aliases import ALIASES
from crypto_predictor.registry.store import LocalStore, open_model_store

# Key spellings a trainer might use for the two headline figures.
_MASE_KEYS = ("mase", "MASE")
_DA_KEYS = ("directional_accuracy", "dir_acc", "direction_accuracy", "hit_rate")


def _number(leaf: dict, keys) -> float | None:
    for key in keys:
        value = leaf.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _leaves(node, path=()):
    """(path, dict) for every dict holding a MASE or directional accuracy, however deeply nested."""
    if isinstance(node, dict):
        if _number(node, _MASE_KEYS) is not None or _number(node, _DA_KEYS) is not None:
            yield path, node
        for key, child in node.items():
            if isinstance(child, (dict, list)):
                yield from _leaves(child, path + (str(key),))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            if isinstance(child, dict):
                # Records like {"asset": "bitcoin", "timeframe": "24h", "kind": "xgboost", "mase": ..}
                named = tuple(str(child[k]) for k in ("asset", "timeframe", "kind") if k in child)
                yield from _leaves(child, path + (named or (str(i),)))


def headline_metrics(overall) -> list[dict]:
    """Best MASE per (asset, timeframe) with its kind and directional accuracy.

    ``overall`` is ``manifest["metrics"]["overall"]`` in whatever shape the trainer wrote;
    path parts after the first two are taken as the model kind. Unknown shapes give [].
    """
    best: dict[str, dict] = {}
    for path, leaf in _leaves(overall):
        pair = "/".join(path[:2]) or "overall"
        kind = "/".join(path[2:]) or str(leaf.get("kind", ""))
        row = {"pair": pair, "kind": kind, "mase": _number(leaf, _MASE_KEYS),
               "directional_accuracy": _number(leaf, _DA_KEYS)}
        held = best.get(pair)
        if held is None or (row["mase"] is not None and (held["mase"] is None
                                                         or row["mase"] < held["mase"])):
            best[pair] = row
    return [best[k] for k in sorted(best)]


def _fmt(value, pattern) -> str:
    return "-" if value is None else pattern.format(value)


def format_table(rows: list[dict]) -> str:
    """One line per version and (asset, timeframe); aliases shown next to their version."""
    header = ("VERSION", "CREATED (UTC)", "ALIASES", "ASSET/TF", "KIND", "BEST MASE", "DIR.ACC")
    lines = [header]
    for row in rows:
        aliases = ",".join(row["aliases"]) or "-"
        created = (row["created_at"] or "-").replace("T", " ").replace("Z", "")
        if row["status"] != "ok":
            lines.append((row["version"], created, aliases, f"INVALID: {row['status']}", "", "", ""))
            continue
        metrics = headline_metrics(row["metrics"]) or [{"pair": "-", "kind": "-", "mase": None,
                                                         "directional_accuracy": None}]
        for i, m in enumerate(metrics):
            first = i == 0
            lines.append((row["version"] if first else "", created if first else "",
                          aliases if first else "", m["pair"], m["kind"] or "-",
                          _fmt(m["mase"], "{:.3f}"), _fmt(m["directional_accuracy"], "{:.1%}")))
    widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in lines)


@click.command(name="deploy")
@click.option("--version", "version", metavar="VERSION",
              help="Version to deploy (e.g. v3), or an alias whose version to copy "
                   "(e.g. --version challenger --alias production promotes the challenger).")
@click.option("--alias", type=click.Choice(ALIASES), default="production", show_default=True,
              help="Alias to switch (with --version) or roll back (with --rollback).")
@click.option("--rollback", "do_rollback", is_flag=True,
              help="Point the alias back at the version it had before its current one.")
@click.option("--list", "do_list", is_flag=True,
              help="List finalized versions with created time, headline metrics and aliases.")
@click.option("--verify", is_flag=True,
              help="With --list: re-hash every bundle and mark the ones that fail (slower).")
@click.option("--push", "push", metavar="VERSION",
              help="Copy a bundle of the local directory into the shared store (MODEL_STORE_URL), verified.")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model store directory (the local copies with a shared store). Default: $MODELS_DIR, "
                   "else improved_models/.")
@click.option("--store-url", default=None, help="Shared model store (default: MODEL_STORE_URL; empty: the directory).")
def deploy_command(version, alias, do_rollback, do_list, verify, push, models_dir, store_url):
    """Switch the production/challenger alias to a verified model version, roll back, list, or push."""
    chosen = [name for name, on in (("--version", version), ("--rollback", do_rollback),
                                    ("--list", do_list), ("--push", push)) if on]
    if len(chosen) != 1:
        raise click.ClickException("choose exactly one of --version, --rollback, --list or --push")
    try:
        store = open_model_store(Path(Config().MODELS_DIR) if models_dir is None else models_dir, store_url)
        if push:
            return _push(store, push)
        if do_list:
            rows = store.list_versions(verify=verify)
            click.echo(format_table(rows) if rows else f"no finalized model versions in {store.describe()}")
            problem = store.read_aliases()[1]
            if problem:
                click.echo(f"warning: {problem}; the aliases above are the ones its history last recorded",
                           err=True)
            return
        if do_rollback:
            entry = store.rollback(alias)
            if entry.get("repaired"):
                click.echo(f"found: {entry['repaired']}; rewrote it from its history", err=True)
            click.echo(f"{alias}: {entry['from']} -> {entry['to']} (rolled back)")
            return
        entry = store.set_alias(alias, version)
        if entry.get("repaired"):
            click.echo(f"found: {entry['repaired']}; rewrote it from its history", err=True)
        if entry["from"] == entry["to"] and not entry.get("repaired"):
            click.echo(f"{alias} already points at {entry['to']}")
        else:
            click.echo(f"{alias}: {entry['from'] or '(unset)'} -> {entry['to']}")
    except CryptoPredictorError as exc:
        raise click.ClickException(exc.message) from None
    except (OSError, ValueError) as exc:  # unwritable store, bad environment settings
        raise click.ClickException(str(exc).replace("\n", " ")) from None


def _push(store, version: str) -> None:
    if isinstance(store, LocalStore):
        raise click.ClickException("--push needs a shared store: set MODEL_STORE_URL or pass --store-url")
    result = store.publish(version)
    if result["pushed"]:
        click.echo(f"pushed {version} to {store.describe()}: {result['uploaded']} new file(s)")
    else:
        click.echo(f"{version} is already in {store.describe()}")
