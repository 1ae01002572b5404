"""`kfts pipeline tune`: a Katib Experiment that tunes the train step's hyperparameters (kfts.kubeflow.katib renders
it), written to a file or stdout.
"""

from __future__ import annotations

import sys

from kfts.kubeflow.deploy import parse_key_value


def cmd_tune(args) -> int:
    from kfts.core.artifact import atomic_file
    from kfts.kubeflow import katib

    experiment = katib.render_experiment(
        algorithm=args.algorithm,
        name=args.name,
        train_uri=args.train,
        valid_uri=args.valid,
        search=[parse_key_value(s, "--search") for s in args.search],
        fixed=dict(parse_key_value(s, "--set") for s in args.set or []),
        image=args.image,
        objective=args.objective,
        max_trials=args.max_trials,
        parallel_trials=args.parallel_trials,
        namespace=args.namespace,
        gpus=args.gpus,
        seed=args.seed,
        model_root=args.model_root,
        cpu=args.cpu,
        memory=args.memory,
        deadline_s=args.trial_deadline,
        storage_secret=args.storage_secret,
        service_account=args.service_account,
    )
    text = katib.to_yaml(experiment)
    if args.output:
        with atomic_file(args.output) as f:
            f.write(text)
        print(f"Katib experiment written to {args.output}: kubectl apply -f {args.output}")
    else:
        sys.stdout.write(text)
    return 0
