"""Point a model alias (production / challenger) at a version, roll it back, or list versions.

    python deploy_model.py --list
    python deploy_model.py --version v3 --alias production
    python deploy_model.py --rollback --alias production
"""

from crypto_predictor.cli.deploy import deploy_command

main = deploy_command

if __name__ == "__main__":
    main()
