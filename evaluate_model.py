"""Re-test an existing model bundle on a date range without retraining: `python evaluate_model.py --help`."""

from crypto_predictor.cli.evaluate import evaluate_command

if __name__ == "__main__":
    evaluate_command(prog_name="evaluate_model.py")
