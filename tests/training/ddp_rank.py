"""One rank of the distributed-training tests, run by torchrun: `training.trainer.train` on a config given as
JSON, recording for the test what this rank read (the utterances of each reading unit, per epoch), its
history, and on rank 0 the trained model's outputs on a fixed batch.

    torchrun --standalone --nproc-per-node 2 tests/training/ddp_rank.py STORE CONFIG_JSON OUT_FOLDER
"""

import json
import os
import sys

import torch

from stores.store import open_store
from training import stream, trainer
from training.config import TrainConfig


def fixed_batch() -> torch.Tensor:
    return torch.rand(2, 30, 257, generator=torch.Generator().manual_seed(1234))


def main() -> None:
    root, config_json, out = sys.argv[1:4]
    reads, kept = [], {}
    read_unit, fit = stream.FeatureStream._read_unit, trainer.Trainer.fit

    def recording_read_unit(self, store, group, rows):
        if self.config.split == "train":
            reads.append({"epoch": self.epoch, "utterances": [r["utterance_id"] for r in rows]})
        return read_unit(self, store, group, rows)

    def keeping_fit(self):
        kept["trainer"] = self
        return fit(self)

    stream.FeatureStream._read_unit = recording_read_unit
    trainer.Trainer.fit = keeping_fit
    config = TrainConfig.from_dict(json.loads(config_json))
    version = trainer.train(open_store(root, create=False), config, "cpu", progress=False)
    done = kept["trainer"]
    rank = done.ranks.rank
    if done.ranks.main:
        with torch.no_grad():
            torch.save(done.model.eval()(fixed_batch()), f"{out}/outputs.pt")
    record = {"version": version, "rank": rank, "world": done.ranks.world_size, "reads": reads}
    record["history"] = done.state.history
    with open(f"{out}/rank-{rank}.json", "w") as handle:
        json.dump(record, handle)
    print(f"rank {rank} of {os.environ['WORLD_SIZE']} done", flush=True)


if __name__ == "__main__":
    main()
