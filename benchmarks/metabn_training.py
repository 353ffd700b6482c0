"""Train 5-way 1-shot MAML with MetaBN (support statistics for the query set) or transductively.

Notebook 05 §4: the shipped checkpoints were meta-trained transductively (the query set
normalised with its own statistics); evaluating them with ``--protocol support-stats`` applies
MetaBN (Bronskill et al. 2020) at test time only. This script trains one network *with* MetaBN
(``--protocol support-stats``), and the same recipe transductively (``--protocol
transductive``) as its control, so that the two differ in the protocol alone. The recipe is
fast-preset-like and short: 8 tasks of 5 queries per class per meta-step, second order with a
first-order warm-up, Adam 0.003 annealed by a cosine, fixed α = 0.4, one inner step (three at
test), seed 0. The commands that made ``assets/metabn_5w1s*.pt``::

    OMP_NUM_THREADS=1 python benchmarks/metabn_training.py --protocol support-stats --run-dir runs/metabn_support-stats
    OMP_NUM_THREADS=1 python benchmarks/metabn_training.py --protocol transductive --run-dir runs/metabn_transductive
    python -m mamlkit export --run-dir runs/metabn_support-stats --out assets/metabn_5w1s.pt --tasks 600
    python -m mamlkit export --run-dir runs/metabn_transductive --out assets/metabn_5w1s_control.pt --tasks 600

The checkpoint's config says ``algorithm: maml``: at test time MAML adapts it as any other, and
``--protocol`` chooses the normalisation of the query set.
"""

from __future__ import annotations

import argparse

from mamlkit.methods import MAML
from mamlkit.protocols import PROTOCOLS, support_stats_meta_loss
from mamlkit.run.config import TrainConfig
from mamlkit.run.train import Trainer

RECIPE = dict(meta_batch_size=8, n_query=5, eval_n_query=1, meta_lr=0.003, meta_lr_schedule="cosine",
              first_order_steps=200, iterations=600, val_every=300, val_tasks=100, checkpoint_every=100,
              log_every=20)


class MetaBNMAML(MAML):
    """MAML whose meta-loss normalises the query set with the support set's statistics."""

    def meta_loss(self, model, params, tasks, implementation="fast"):
        return support_stats_meta_loss(model, params, tasks, self.loss_fn, self.inner_lr,
                                       self.inner_steps, self.first_order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=PROTOCOLS, required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--iterations", type=int, default=RECIPE["iterations"])
    args = parser.parse_args()
    config = TrainConfig(**{**RECIPE, "iterations": args.iterations})
    trainer = Trainer(config, args.run_dir)
    if args.protocol == "support-stats":
        trainer.method = MetaBNMAML(config.inner_lr, config.inner_steps, config.first_order)
    trainer.resume_if_possible()
    trainer.train(progress=False)


if __name__ == "__main__":
    main()
