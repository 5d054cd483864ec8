"""``python -m crypto_predictor``: the click group naming every command.

The top-level scripts run single commands directly: ``train_model.py`` (``cli.train``),
``evaluate_model.py`` (``cli.evaluate``) and ``deploy_model.py`` (``cli.deploy``).
"""

from __future__ import annotations

import click

from crypto_predictor.cli.bootstrap import bootstrap_command
from crypto_predictor.cli.data import ingest, init
from crypto_predictor.cli.deploy import deploy_command
from crypto_predictor.cli.evaluate import evaluate_command
from crypto_predictor.cli.jobs import refresh, retrain, verify
from crypto_predictor.cli.train import train_command


@click.group()
def cli():
    """crypto-predictor: market data, training, evaluation and deployment."""


for _command, _name in ((init, "init"), (ingest, "ingest"), (train_command, "train"),
                        (evaluate_command, "evaluate"), (deploy_command, "deploy"), (refresh, "refresh"),
                        (verify, "verify"), (retrain, "retrain"), (bootstrap_command, "bootstrap")):
    cli.add_command(_command, _name)


def main():
    cli(prog_name="python -m crypto_predictor")
