"""Train, walk-forward evaluate and version models: `python train_model.py --help`."""

from crypto_predictor.cli.train import train_command

if __name__ == "__main__":
    train_command(prog_name="train_model.py")
