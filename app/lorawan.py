"""How many application bytes one LoRaWAN downlink can carry, from the device's last uplink.

The composer's byte counter shows this next to the platform's own limit: a 60-byte downlink to
a device that last spoke at SF12 in EU868 is accepted by every network server's API and then
never reaches the device (or is cut into MAC-only frames), and none of the platforms says so
when the downlink is queued.

The numbers are N, the maximum application payload (FRMPayload) without FOpts, from the LoRa
Alliance's LoRaWAN Regional Parameters (RP002-1.0.x; the same values as v1.0.3revA):
- EU863-870: the table "EU863-870 maximum payload size (not repeater compatible)" (RP v1.0.3revA
  §2.2.6, "EU863-870 Maximum payload size"): DR0-2 51, DR3 115, DR4-7 242 bytes; RX1 uses the
  uplink's data rate (RX1DROffset 0);
- US902-928: "Table 16: US902-928 maximum payload size (not repeater compatible)" (RP v1.0.3revA
  §2.3.6): DR0 11, DR1 53, DR2 125, DR3-4 242, DR8 53, DR9 129, DR10-13 242 bytes; and "Table 17:
  US902-928 downlink RX1 data rate mapping" (§2.3.7, RX1DROffset 0: DR0→DR10, DR1→DR11,
  DR2→DR12, DR3→DR13, DR4→DR13). RX2 is DR8.
MAC commands piggy-backed in FOpts take room from the same frame, so N is an upper bound.

The data rate comes from the uplink's spreading factor and bandwidth, the region from its
frequency (863-870 MHz: EU868; 902-928 MHz: US915). Anything else, or a missing value, gives
None, which the composer shows as "unknown" rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

EU868 = "EU868"
US915 = "US915"
REGIONS = (EU868, US915)

# (spreading factor, bandwidth in kHz) -> data rate, per region (LoRa modulation only).
_DATA_RATES = {
    EU868: {(12, 125): 0, (11, 125): 1, (10, 125): 2, (9, 125): 3, (8, 125): 4, (7, 125): 5, (7, 250): 6},
    US915: {
        (10, 125): 0,
        (9, 125): 1,
        (8, 125): 2,
        (7, 125): 3,
        (8, 500): 4,  # uplink DR4; the same modulation as downlink DR12
        (12, 500): 8,
        (11, 500): 9,
        (10, 500): 10,
        (9, 500): 11,
        (7, 500): 13,
    },
}
# Maximum application payload N (bytes, no FOpts), not repeater compatible.
MAX_APPLICATION_PAYLOAD = {
    EU868: {0: 51, 1: 51, 2: 51, 3: 115, 4: 242, 5: 242, 6: 242, 7: 242},
    US915: {0: 11, 1: 53, 2: 125, 3: 242, 4: 242, 8: 53, 9: 129, 10: 242, 11: 242, 12: 242, 13: 242},
}
# The data rate of the RX1 downlink after an uplink at a data rate, with RX1DROffset 0.
_RX1_DATA_RATE = {EU868: {dr: dr for dr in range(8)}, US915: {0: 10, 1: 11, 2: 12, 3: 13, 4: 13}}
RX2_DATA_RATE = {EU868: 0, US915: 8}


def region_of(frequency_hz: int | float | None) -> str | None:
    """EU868 or US915 from an uplink's frequency; None for other bands or no frequency."""
    if not frequency_hz or frequency_hz != frequency_hz:  # None, 0, NaN
        return None
    mhz = frequency_hz / 1e6
    if 863.0 <= mhz <= 870.0:
        return EU868
    if 902.0 <= mhz <= 928.0:
        return US915
    return None


def data_rate_of(region: str | None, spreading_factor: int | None, bandwidth_hz: int | None) -> int | None:
    """The LoRaWAN data rate (DR number) of LoRa modulation in a region; None if unknown."""
    if region not in _DATA_RATES or not spreading_factor:
        return None
    bandwidth_khz = round(bandwidth_hz / 1000) if bandwidth_hz else 125  # most parsers omit 125 kHz
    return _DATA_RATES[region].get((int(spreading_factor), bandwidth_khz))


@dataclass(frozen=True, slots=True)
class DownlinkLimit:
    """What the next downlink may carry, and the words to say where the number comes from."""

    region: str
    uplink_data_rate: int
    downlink_data_rate: int
    max_payload: int

    def describe(self) -> str:
        if self.downlink_data_rate == self.uplink_data_rate:
            where = f"DR{self.downlink_data_rate} ({self.region})"
        else:
            where = f"RX1 DR{self.downlink_data_rate} after an uplink at DR{self.uplink_data_rate} ({self.region})"
        return f"{self.max_payload} bytes at {where}"


def downlink_limit(
    spreading_factor: int | None, bandwidth_hz: int | None, frequency_hz: int | float | None
) -> DownlinkLimit | None:
    """The maximum application payload of a class A downlink answering an uplink with these radio
    values (RX1, RX1DROffset 0); None when the region or the data rate is not known."""
    region = region_of(frequency_hz)
    uplink = data_rate_of(region, spreading_factor, bandwidth_hz)
    if region is None or uplink is None:
        return None
    downlink = _RX1_DATA_RATE[region].get(uplink, uplink)
    limit = MAX_APPLICATION_PAYLOAD[region].get(downlink)
    if limit is None:
        return None
    return DownlinkLimit(region, uplink, downlink, limit)


def max_application_payload(region: str, data_rate: int) -> int | None:
    """N for a region and data rate, or None where the table does not define it."""
    return MAX_APPLICATION_PAYLOAD.get(region, {}).get(data_rate)
