"""``--shard I/N``: one machine's share of a job that N machines split between them.

Every sharded command (augmentation, feature extraction, test prediction) takes the
same share of the same sorted list, so a job is split the same way whichever machine
runs which shard; each shard writes only what it computed, and a final, unsharded
command merges (see docs/multi-machine.md).
"""

from dataclasses import dataclass

from ripik_clf.errors import UserError


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as users count machines (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX + 1)
    count: int

    @classmethod
    def parse(cls, text):
        """'2/4' -> Shard(2, 4); the whole job is '1/1'."""
        try:
            index, count = (int(part) for part in str(text).split("/"))
        except ValueError:
            raise UserError(f"--shard expects I/N such as 1/2, got {text!r}") from None
        if not 1 <= index <= count:
            raise UserError(f"--shard {text}: I must be between 1 and N")
        return cls(index, count)

    @property
    def whole(self):
        return self.count == 1

    @property
    def suffix(self):
        return "" if self.whole else f".shard-{self.index}-of-{self.count}"

    def take(self, items):
        """This shard's items of ``items`` (every N-th, from the I-th, of the sorted list):
        the N shares are disjoint and together hold every item."""
        return sorted(items)[self.index - 1 :: self.count]


WHOLE = Shard(1, 1)
