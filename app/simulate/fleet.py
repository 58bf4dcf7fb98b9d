"""The simulated fleet every platform simulator shares: devices, gateways and the radio between them.

A platform module only writes frames in its platform's format; what happens on the air lives here,
so every platform shows the same life: per-device RSSI/SNR that drift (a slow swing plus a random
walk pulled back to the device's own level), a spreading factor that follows the link margin the
way ADR moves it, one to four gateways hearing each uplink, frame counters that count up with
occasional gaps (lost frames), resets (a reboot with ABP keys) and rejoins (a new session and
DevAddr), devices that report periodically and others in bursts, payloads of four device types
decoded as their codecs would, and now and then a malformed message so error rows show too.

Everything comes from one `random.Random(seed)`: the same seed gives the same frames, in the same
order, with the same values. Time is the fleet's own clock (`Frame.time`); a driver paces frames
by it (app.simulate.run) so `--rate` messages a second arrive with the bursts where they fall.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import random
import struct
from dataclasses import dataclass, field

UPLINK = "uplink"
JOIN = "join"
MALFORMED = "malformed"
KINDS = (UPLINK, JOIN, MALFORMED)

# EU868: uplink channels (Hz) and the spreading factors ADR moves between.
CHANNELS_HZ = (868_100_000, 868_300_000, 868_500_000, 867_100_000, 867_300_000, 867_500_000, 867_700_000, 867_900_000)
SF_MIN, SF_MAX = 7, 12
# The demodulation floor of LoRa per SF (dB SNR); ADR keeps a margin above it.
SNR_FLOOR = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
ADR_MARGIN_DB = 10.0
RSSI_FLOOR = -130.0  # a gateway does not hear a frame below this


@dataclass(frozen=True, slots=True)
class Gateway:
    index: int
    gateway_id: str  # TTS style: eui-<lowercase eui>
    eui: str  # uppercase hex, 16 digits
    lrr_id: str  # ThingPark's 8-hex-digit base station id
    name: str
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class Reception:
    gateway: Gateway
    rssi: float
    snr: float
    channel: int
    timestamp: int  # the gateway's concentrator counter (µs)


@dataclass(slots=True)
class Frame:
    """One thing a device did, platform-neutral: an uplink, a join, or a malformed message."""

    kind: str
    device: Device
    time: dt.datetime
    f_cnt: int = 0
    f_port: int = 0
    payload: bytes = b""
    decoded: dict | None = None
    receptions: list[Reception] = field(default_factory=list)
    spreading_factor: int = 7
    bandwidth_hz: int = 125_000
    frequency_hz: int = 868_100_000
    confirmed: bool = False
    notes: tuple[str, ...] = ()  # "gap", "reset", "rejoin", "burst"
    sequence: int = 0  # the fleet's running number of this frame
    malformed_seed: int = 0  # which malformed body a platform writes

    @property
    def best(self) -> Reception | None:
        return max(self.receptions, key=lambda r: r.rssi) if self.receptions else None


# ----- device types: what each sends and how its codec decodes it ---------------------------------


def _env_sensor(rnd: random.Random, state: dict, t: float) -> tuple[int, bytes, dict]:
    day = math.sin(2 * math.pi * t / 86_400)
    temperature = state.setdefault("base_t", 17 + 8 * rnd.random()) + 4 * day + rnd.gauss(0, 0.3)
    humidity = max(5, min(99, int(state.setdefault("base_h", 35 + rnd.randrange(30)) - 10 * day + rnd.gauss(0, 2))))
    battery = _battery(state, rnd)
    frame = struct.pack(">hBH", int(round(temperature * 100)), humidity, int(battery * 1000))
    decoded = {"temperature": round(int(round(temperature * 100)) / 100, 2), "humidity": humidity, "battery": battery}
    return 2, frame, decoded


def _gps_tracker(rnd: random.Random, state: dict, t: float) -> tuple[int, bytes, dict]:
    lat = state.setdefault("lat", 46.5 + rnd.uniform(-0.5, 0.5))
    lon = state.setdefault("lon", 6.6 + rnd.uniform(-0.5, 0.5))
    moving = rnd.random() < 0.6
    speed = round(rnd.uniform(3, 60), 1) if moving else 0.0
    if moving:
        heading = state.setdefault("heading", rnd.uniform(0, 2 * math.pi)) + rnd.gauss(0, 0.4)
        state["heading"] = heading
        step = speed / 3600 / 111  # degrees for a minute at that speed, roughly
        lat, lon = lat + step * math.cos(heading), lon + step * math.sin(heading)
        state["lat"], state["lon"] = lat, lon
    battery = _battery(state, rnd)
    lat_i, lon_i = int(round(lat * 1e6)), int(round(lon * 1e6))
    frame = struct.pack(">iiHB", lat_i, lon_i, int(speed * 10), int(battery * 10))
    decoded = {
        "latitude": lat_i / 1e6,
        "longitude": lon_i / 1e6,
        "speed_kmh": int(speed * 10) / 10,
        "battery": int(battery * 10) / 10,
    }
    return 3, frame, decoded


def _door_contact(rnd: random.Random, state: dict, t: float) -> tuple[int, bytes, dict]:
    is_open = not state.get("open", False)
    state["open"] = is_open
    state["openings"] = state.get("openings", 0) + (1 if is_open else 0)
    frame = struct.pack(">BI", 1 if is_open else 0, state["openings"])
    return 4, frame, {"open": is_open, "openings": state["openings"]}


def _water_meter(rnd: random.Random, state: dict, t: float) -> tuple[int, bytes, dict]:
    state["litres"] = state.setdefault("litres", rnd.randrange(10_000, 900_000)) + rnd.randrange(0, 40)
    leak = rnd.random() < 0.02
    frame = struct.pack(">IB", state["litres"], 1 if leak else 0)
    return 5, frame, {"volume_l": state["litres"], "leak": leak}


def _battery(state: dict, rnd: random.Random) -> float:
    state["battery"] = max(2.9, state.setdefault("battery", round(3.0 + rnd.random() * 0.6, 3)) - 0.0005)
    return round(state["battery"], 3)


@dataclass(frozen=True, slots=True)
class DeviceType:
    name: str
    model: str  # what Tektelic calls the device model
    period_weight: float  # relative reporting period (1 = the fleet's mean)
    bursty: bool  # reports in bursts (events) rather than on a clock
    encode: object  # (rnd, state, t) -> (f_port, frame bytes, decoded dict)


DEVICE_TYPES = (
    DeviceType("env-sensor", "Environment sensor", 1.0, False, _env_sensor),
    DeviceType("gps-tracker", "GPS tracker", 0.6, False, _gps_tracker),
    DeviceType("door-contact", "Door contact", 1.6, True, _door_contact),
    DeviceType("water-meter", "Water meter", 1.4, False, _water_meter),
)


@dataclass(slots=True)
class Device:
    index: int
    type: DeviceType
    device_id: str
    dev_eui: str
    dev_addr: str
    gateways: list[tuple[Gateway, float]]  # the gateways in range, each with its path loss offset (dB)
    base_rssi: float
    period_s: float
    f_cnt: int = 0
    f_cnt_down: int = 0
    spreading_factor: int = 7
    rssi_walk: float = 0.0
    phase: float = 0.0
    state: dict = field(default_factory=dict)
    burst_left: int = 0
    joined: bool = False


@dataclass(frozen=True, slots=True)
class FleetOptions:
    devices: int = 12
    gateways: int = 4
    rate: float = 5.0  # frames a second over the whole fleet, on the fleet's clock
    seed: int = 1
    gap_probability: float = 0.03  # an uplink lost on the way: the next f_cnt skips 1..5
    reset_probability: float = 0.004  # a reboot: f_cnt starts again at 0
    rejoin_probability: float = 0.004  # a new session: a join, a new DevAddr, f_cnt 0
    malformed_probability: float = 0.01
    confirmed_probability: float = 0.05


class Fleet:
    """Devices and gateways; `next_frame()` gives the frames in the order the fleet's clock has them."""

    def __init__(self, options: FleetOptions | None = None, start: dt.datetime | None = None) -> None:
        self.options = options = options or FleetOptions()
        if options.devices < 1:
            raise ValueError("A fleet needs at least one device.")
        if options.rate <= 0:
            raise ValueError("The rate must be more than 0 messages a second.")
        self.rnd = random.Random(options.seed)
        self.start = start or dt.datetime.now(dt.UTC)
        self.gateways = [self._gateway(i) for i in range(max(1, options.gateways))]
        weights = [DEVICE_TYPES[i % len(DEVICE_TYPES)].period_weight for i in range(options.devices)]
        # Periods scale * weight: the devices' frames a second add up to the rate (bursts add a little).
        scale = sum(1 / w for w in weights) / options.rate
        self.devices = [self._device(i, scale) for i in range(options.devices)]
        self.sequence = 0
        # (due time in seconds from start, tie-breaker, device index)
        self._queue: list[tuple[float, int, int]] = []
        for device in self.devices:
            # Everyone speaks within the first two seconds (a demo's tables fill at once), then on its own clock.
            first = self.rnd.uniform(0, min(device.period_s, 2.0))
            heapq.heappush(self._queue, (first, device.index, device.index))
        self.counts = {kind: 0 for kind in KINDS} | {"gap": 0, "reset": 0, "rejoin": 0, "burst": 0}

    # ----- building the fleet

    def _gateway(self, i: int) -> Gateway:
        eui = f"B827EBFFFE{0xA00000 + i * 0x111:06X}"
        return Gateway(
            index=i,
            gateway_id=f"eui-{eui.lower()}",
            eui=eui,
            lrr_id=f"{0x100000A0 + i:08X}",
            name=f"gateway-{i + 1}",
            latitude=round(46.5 + 0.05 * math.cos(i), 5),
            longitude=round(6.6 + 0.05 * math.sin(i), 5),
        )

    def _device(self, i: int, scale: float) -> Device:
        kind = DEVICE_TYPES[i % len(DEVICE_TYPES)]
        rnd = self.rnd
        in_range = rnd.randint(1, min(4, len(self.gateways)))
        chosen = rnd.sample(self.gateways, in_range)
        gateways = [(g, 0.0 if n == 0 else -rnd.uniform(3, 25)) for n, g in enumerate(chosen)]
        base_rssi = rnd.uniform(-118, -62)
        device = Device(
            index=i,
            type=kind,
            device_id=f"{kind.name}-{i + 1:03d}",
            dev_eui=f"70B3D57ED0{0x050000 + i:06X}",
            dev_addr=self._dev_addr(),
            gateways=gateways,
            base_rssi=base_rssi,
            period_s=scale * kind.period_weight * rnd.uniform(0.8, 1.25),
            f_cnt=rnd.randrange(0, 2000),
            phase=rnd.uniform(0, 2 * math.pi),
            joined=True,
        )
        device.spreading_factor = self._adr(device, self._snr(base_rssi))
        return device

    def _dev_addr(self) -> str:
        return f"260B{self.rnd.randrange(0x10000):04X}"

    # ----- radio

    @staticmethod
    def _snr(rssi: float) -> float:
        # Around -120 dBm a LoRa link is near the noise floor; SNR rises with the level, capped at ~+10 dB.
        return max(-20.0, min(10.5, (rssi + 117) * 0.45))

    @staticmethod
    def _adr(device: Device, snr: float) -> int:
        """The SF that leaves about ADR_MARGIN_DB over the floor, one step at a time as ADR moves it."""
        target = SF_MIN
        for sf in range(SF_MIN, SF_MAX + 1):
            target = sf
            if snr - SNR_FLOOR[sf] >= ADR_MARGIN_DB:
                break
        current = device.spreading_factor or target
        return current + (1 if target > current else -1 if target < current else 0)

    def _level(self, device: Device, t: float) -> float:
        """The device's RSSI at its best gateway now: its own level, a slow swing, a random walk."""
        device.rssi_walk = 0.9 * device.rssi_walk + self.rnd.gauss(0, 1.6)
        swing = 6 * math.sin(2 * math.pi * t / 3600 + device.phase)
        return device.base_rssi + swing + device.rssi_walk

    def _receptions(self, device: Device, level: float) -> list[Reception]:
        out = []
        channel = self.rnd.randrange(len(CHANNELS_HZ))
        for n, (gateway, offset) in enumerate(device.gateways):
            rssi = level + offset + self.rnd.gauss(0, 1.5)
            if n > 0 and (rssi < RSSI_FLOOR or self.rnd.random() < 0.25):
                continue  # the farther gateways miss some frames
            rssi = max(rssi, RSSI_FLOOR)
            snr = self._snr(rssi) + self.rnd.gauss(0, 0.8)
            out.append(
                Reception(
                    gateway=gateway,
                    rssi=round(rssi),
                    snr=round(max(-20.0, min(13.5, snr)), 1),
                    channel=channel,
                    timestamp=self.rnd.randrange(2**32),
                )
            )
        return out

    # ----- the clock

    def next_frame(self) -> Frame:
        due, _, index = heapq.heappop(self._queue)
        device = self.devices[index]
        frame = self._frame(device, due)
        heapq.heappush(self._queue, (due + self._wait(device), self.sequence, index))
        self.sequence += 1
        frame.sequence = self.sequence
        self.counts[frame.kind] += 1
        for note in frame.notes:
            self.counts[note] += 1
        return frame

    def frames(self, count: int):
        for _ in range(count):
            yield self.next_frame()

    def _wait(self, device: Device) -> float:
        rnd = self.rnd
        if device.burst_left > 0:
            device.burst_left -= 1
            return rnd.uniform(0.2, 2.0) * min(1.0, device.period_s / 10)
        if device.type.bursty:
            if rnd.random() < 0.35:
                device.burst_left = rnd.randint(2, 6)
            return rnd.expovariate(1 / device.period_s)
        return device.period_s * rnd.uniform(0.97, 1.03)

    def _frame(self, device: Device, due: float) -> Frame:
        rnd = self.rnd
        o = self.options
        time = self.start + dt.timedelta(seconds=due)
        if rnd.random() < o.malformed_probability:
            return Frame(MALFORMED, device, time, f_cnt=device.f_cnt, malformed_seed=rnd.randrange(1 << 30))
        notes: list[str] = []
        if device.burst_left > 0:
            notes.append("burst")
        level = self._level(device, due)
        receptions = self._receptions(device, level)
        best = max(receptions, key=lambda r: r.rssi)
        device.spreading_factor = self._adr(device, best.snr)
        frequency = CHANNELS_HZ[best.channel]
        if rnd.random() < o.rejoin_probability or not device.joined:
            device.joined = True
            device.dev_addr = self._dev_addr()
            device.f_cnt = 0
            device.f_cnt_down = 0
            device.spreading_factor = SF_MAX - 2  # a fresh session starts slow; ADR speeds it up
            return Frame(
                JOIN,
                device,
                time,
                receptions=receptions,
                spreading_factor=device.spreading_factor,
                frequency_hz=frequency,
                payload=rnd.randbytes(23),
                notes=("rejoin",),
            )
        if rnd.random() < o.reset_probability:
            device.f_cnt = 0
            notes.append("reset")
        elif rnd.random() < o.gap_probability:
            device.f_cnt += rnd.randint(1, 5)
            notes.append("gap")
        f_cnt = device.f_cnt
        device.f_cnt = (device.f_cnt + 1) % (1 << 32)
        f_port, payload, decoded = device.type.encode(rnd, device.state, due)
        return Frame(
            UPLINK,
            device,
            time,
            f_cnt=f_cnt,
            f_port=f_port,
            payload=payload,
            decoded=decoded,
            receptions=receptions,
            spreading_factor=device.spreading_factor,
            frequency_hz=frequency,
            confirmed=rnd.random() < o.confirmed_probability,
            notes=tuple(notes),
        )

    def device_named(self, name: str) -> Device | None:
        """The device with this id or DevEUI (any case), or None."""
        wanted = name.upper()
        for device in self.devices:
            if device.device_id.upper() == wanted or device.dev_eui == wanted:
                return device
        return None


def iso_z(moment: dt.datetime, digits: str = "microseconds") -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec=digits).replace("+00:00", "Z")
