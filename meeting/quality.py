"""Quality tiers by head count: frame rate and pose precision, with hysteresis against flapping."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QualityTier:
    index: int
    max_participants: int
    fps: int
    bits: int


class QualityPolicy:
    """Picks a tier for a head count. Going up is immediate; going down waits until the count is
    `hysteresis` below the lower tier's limit, so a count flapping around a boundary keeps its tier."""

    def __init__(self, tiers: list[tuple[int, int, int]], hysteresis: int = 1):
        if not tiers:
            raise ValueError("at least one quality tier is needed")
        limits = [t[0] for t in tiers]
        if limits != sorted(limits) or len(set(limits)) != len(limits):
            raise ValueError("tier limits must increase")
        self.tiers = tuple(QualityTier(i, m, fps, bits) for i, (m, fps, bits) in enumerate(tiers))
        self.hysteresis = max(0, hysteresis)

    @classmethod
    def parse(cls, spec: str, hysteresis: int = 1) -> QualityPolicy:
        """'4:30:8,9:20:7,16:10:6' -> tiers of (max participants, fps, bits)."""
        try:
            tiers = [tuple(int(x) for x in part.split(":")) for part in spec.split(",")]
            if any(len(t) != 3 for t in tiers):
                raise ValueError
        except ValueError:
            raise ValueError(f"quality tiers {spec!r} are not 'max:fps:bits,...'") from None
        return cls(tiers, hysteresis)

    def target(self, count: int) -> QualityTier:
        for tier in self.tiers:
            if count <= tier.max_participants:
                return tier
        return self.tiers[-1]

    def tier_for(self, count: int, current: QualityTier | None = None) -> QualityTier:
        target = self.target(count)
        if current is None or target.index >= current.index:
            return target
        for tier in self.tiers[target.index:current.index]:
            if count <= tier.max_participants - self.hysteresis:
                return tier
        return current
