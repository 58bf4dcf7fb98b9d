"""Per-device statistics from the live event stream: uplinks, frame-counter loss, radio quality.

`DeviceTracker.update` consumes the column batches of `app.store.columns_from_rows` (the same
batches the EventStore takes) and keeps one mutable `DeviceStats` per device key (DevEUI, else
device id). It runs on the GUI thread at up to 20k rows/s, so the per-row loop touches only
slotted attributes and local names: no object per row, no dict per row.

Frame counters (fCnt) are tracked per device "session"; see `DeviceTracker.update` for the rules.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from itertools import compress, count

from app.store import NONE_INT

# Platforms whose uplink fCnt is the 16-bit counter from the frame header, which wraps at 65536.
# The Things Stack, ThingPark and Tektelic report the network server's 32-bit counter.
SIXTEEN_BIT_PLATFORMS = frozenset({"generic", "drogue"})
# Kinds the network server or the console originates: they neither create activity nor change stats.
OUTGOING_KINDS = frozenset({"downlink_queued", "downlink_sent", "downlink_failed", "downlink_nack"})
RESET_MAX_FCNT = 1  # a counter that goes back to this or lower is a restarted device (ABP reboot)
WRAP_FROM = 65_000  # 16-bit rollover: last counter at least this ...
WRAP_TO = 500  # ... and the next one below this
WINDOW = 32  # how far back a late (out-of-order) frame is still matched against the frames seen
_MASK = (1 << WINDOW) - 1
_FRESH = -(2**40)  # _last before the first counted uplink: the next one starts afresh
_JOINED = -(2**41)  # _last after a join that followed uplinks: the next one starts afresh as a reset


@dataclass(slots=True, eq=False)
class DeviceStats:
    key: str  # DevEUI, else device id (the store's device_key)
    device_id: str | None = None
    dev_eui: str | None = None
    platform: str | None = None
    application_id: str | None = None
    first_seen: float = math.nan  # epoch seconds
    last_seen: float = math.nan  # epoch seconds of the latest event that came from the device
    uplinks: int = 0  # distinct uplink frames (duplicates not included)
    joins: int = 0
    missed: int = 0  # uplinks lost to fCnt gaps
    duplicates: int = 0  # a frame counter seen again
    resets: int = 0  # the counter went back (device restart) or a rejoin started a new session
    best_rssi: float | None = None
    best_snr: float | None = None
    last_rssi: float | None = None  # of the latest uplink that reported one
    last_snr: float | None = None
    last_sf: int | None = None
    last_gateway: str | None = None
    last_f_cnt: int | None = None
    last_f_port: int | None = None
    errors: int = 0
    index: int = 0  # first-seen ordinal in its tracker
    # fCnt session state: the highest counter of the session (or _FRESH/_JOINED), and a bitmask of
    # the WINDOW counters up to it (bit k = counter _last-k was received; a 0 was counted missed).
    _last: int = field(default=_FRESH, repr=False)
    _mask: int = field(default=_MASK, repr=False)
    _wraps: bool = field(default=False, repr=False)  # 16-bit counters
    _complete: bool = field(default=False, repr=False)  # device_id, dev_eui, application_id all known
    _rssi_sum: float = field(default=0.0, repr=False)
    _rssi_n: int = field(default=0, repr=False)
    _snr_sum: float = field(default=0.0, repr=False)
    _snr_n: int = field(default=0, repr=False)

    @property
    def mean_rssi(self) -> float | None:
        return self._rssi_sum / self._rssi_n if self._rssi_n else None

    @property
    def mean_snr(self) -> float | None:
        return self._snr_sum / self._snr_n if self._snr_n else None

    @property
    def loss_percent(self) -> float | None:
        """Share of the expected uplinks that never arrived: missed / (uplinks + missed) * 100.

        None before the first uplink that carried a frame counter (akenza's carry none)."""
        if self._last == _FRESH or not self.uplinks:
            return None
        return self.missed / (self.uplinks + self.missed) * 100.0


class DeviceTracker:
    """One `DeviceStats` per device key, updated from column batches."""

    def __init__(self, sixteen_bit_platforms: frozenset[str] | set[str] = SIXTEEN_BIT_PLATFORMS) -> None:
        self.sixteen_bit_platforms = frozenset(sixteen_bit_platforms)
        self._devices: dict[str, DeviceStats] = {}
        self._order: list[str] = []
        self.generation = 0  # bumped by clear(), so views holding keys know to start over

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, key: object) -> bool:
        return key in self._devices

    def __iter__(self):
        return iter(self._order)

    def keys(self, start: int = 0) -> list[str]:
        """Device keys in first-seen order (from the start-th on: the ones new since a count)."""
        return self._order[start:]

    def stats(self, key: str) -> DeviceStats | None:
        """The live (mutable) stats of a device, or None if never seen."""
        return self._devices.get(key)

    def clear(self) -> None:
        self._devices.clear()
        self._order.clear()
        self.generation += 1

    def adopt(self, other: DeviceTracker) -> None:
        """Takes other's devices and statistics in place of its own (views start over), e.g. a
        tracker that went through the rows again in order."""
        self._devices = other._devices
        self._order = other._order
        self.generation += 1

    def update(self, batch: dict) -> set[str]:
        """Consumes one column batch; returns the keys of the devices whose stats changed.

        Every row with a device key creates the device; all but outgoing downlink kinds move
        last_seen; "uplink" rows count uplinks and radio stats, "join" rows joins (and make the
        next uplink start a new counter session), "error" rows errors. The fCnt rules, one per
        branch, are commented below (last = the session's highest counter, d = next - last).
        """
        if not batch:
            return set()
        devices = self._devices
        get = devices.get
        changed: set[str] = set()
        add = changed.add
        platforms = batch["platform"]
        app_ids = batch["application_id"]
        device_ids = batch["device_id"]
        euis = batch["dev_eui"]
        none_int = NONE_INT
        outgoing = OUTGOING_KINDS
        for i, key, kind, ts, fc, rssi, snr, sf, gw, port in zip(
            count(),
            batch["device_key"],
            batch["kind"],
            batch["ts"],
            batch["f_cnt"],
            batch["rssi"],
            batch["snr"],
            batch["spreading_factor"],
            batch["gateway_id"],
            batch["f_port"],
        ):
            if key is None:
                continue
            s = get(key)
            if s is None:
                s = self._new(key, i, batch, ts)
                add(key)
            elif not s._complete:
                self._fill(s, device_ids[i], euis[i], app_ids[i], platforms[i])
            if kind == "uplink":
                if ts > s.last_seen:
                    s.last_seen = ts
                if rssi == rssi:  # not NaN
                    n = s._rssi_n
                    if n == 0 or rssi > s.best_rssi:
                        s.best_rssi = rssi
                    s._rssi_n = n + 1
                    s._rssi_sum += rssi
                    s.last_rssi = rssi
                if snr == snr:
                    n = s._snr_n
                    if n == 0 or snr > s.best_snr:
                        s.best_snr = snr
                    s._snr_n = n + 1
                    s._snr_sum += snr
                    s.last_snr = snr
                if sf != none_int:
                    s.last_sf = sf
                if gw is not None:
                    s.last_gateway = gw
                if port != none_int:
                    s.last_f_port = port
                if fc < 0:  # NONE_INT: no counter (e.g. akenza): counted, no loss accounting
                    s.uplinks += 1
                    continue
                s.last_f_cnt = fc
                last = s._last
                d = fc - last
                if d == 1:
                    # next == last+1: the normal case.
                    s.uplinks += 1
                    s._last = fc
                    s._mask = ((s._mask << 1) | 1) & _MASK
                elif d > 1:
                    if last < 0:
                        # First counter, or first after a join: starts afresh; after a join that
                        # followed uplinks it is a rejoin and counts a reset.
                        if last == _JOINED:
                            s.resets += 1
                        s.uplinks += 1
                        s._last = fc
                        s._mask = _MASK
                    elif s._wraps and last < WRAP_TO and WRAP_FROM <= fc < 65536:
                        # 16-bit counter rolled over lately and a frame from before the wrap comes late.
                        _went_back(s, last + 65536 - fc, fc)
                    else:
                        # next > last+1: the frames in between were lost.
                        s.uplinks += 1
                        s.missed += d - 1
                        s._last = fc
                        s._mask = ((s._mask << d) | 1) & _MASK if d < WINDOW else 1
                elif d == 0:
                    # next == last: the same frame again (not an uplink for loss accounting).
                    s.duplicates += 1
                elif s._wraps and WRAP_FROM <= last < 65536 and fc < WRAP_TO:
                    # 16-bit counter rolled over: continuation; missed = the frames across the wrap.
                    d = fc + 65536 - last
                    s.uplinks += 1
                    s.missed += d - 1
                    s._mask = ((s._mask << d) | 1) & _MASK if d < WINDOW else 1
                    s._last = fc
                elif fc <= RESET_MAX_FCNT:
                    # Back to 0 or 1: the device restarted its counter (ABP reboot): a reset, afresh.
                    s.uplinks += 1
                    s.resets += 1
                    s._last = fc
                    s._mask = _MASK
                else:
                    _went_back(s, -d, fc)
            elif kind not in outgoing:
                if ts > s.last_seen:
                    s.last_seen = ts
                if kind == "join":
                    s.joins += 1
                    if s._last >= 0:
                        s._last = _JOINED  # the next uplink starts a new session
                elif kind == "error":
                    s.errors += 1
        # The devices with a row that is not an outgoing downlink, decided in C, plus the new ones.
        keys = batch["device_key"]
        changed.update(compress(keys, map(operator.not_, map(outgoing.__contains__, batch["kind"]))))
        changed.discard(None)
        return changed

    def _new(self, key: str, i: int, batch: dict, ts: float) -> DeviceStats:
        platform = batch["platform"][i]
        s = DeviceStats(
            key,
            batch["device_id"][i],
            batch["dev_eui"][i],
            platform,
            batch["application_id"][i],
            ts,
            ts,
            index=len(self._order),
        )
        s._wraps = platform in self.sixteen_bit_platforms
        s._complete = None not in (s.device_id, s.dev_eui, s.application_id)
        self._devices[key] = s
        self._order.append(key)
        return s

    @staticmethod
    def _fill(s: DeviceStats, device_id, dev_eui, application_id, platform) -> None:
        """Fills identifiers an earlier event of the device did not carry."""
        if s.device_id is None:
            s.device_id = device_id
        if s.dev_eui is None:
            s.dev_eui = dev_eui
        if s.application_id is None:
            s.application_id = application_id
        if s.platform is None:
            s.platform = platform
        s._complete = None not in (s.device_id, s.dev_eui, s.application_id)


def _went_back(s: DeviceStats, back: int, fc: int) -> None:
    """A counter `back` below the session's highest (the rare case, out of the hot loop)."""
    if back < WINDOW:
        # Back by less than WINDOW: a late frame; seen already -> duplicate, else no longer missed.
        bit = 1 << back
        if s._mask & bit:
            s.duplicates += 1
        else:
            s._mask |= bit
            s.missed -= 1
            s.uplinks += 1
    else:
        # Back by WINDOW or more: the counter restarted (reset); start afresh from here.
        s.uplinks += 1
        s.resets += 1
        s._last = fc
        s._mask = _MASK


def format_age(seconds: float) -> str:
    """'now', '3 s ago', '5 min ago', '2 h ago', '4 d ago' ('' when unknown)."""
    if seconds != seconds:
        return ""
    if seconds < 1:
        return "now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"
