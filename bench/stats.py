"""Figures from the load processes' reports, and the machine they were measured on."""
from __future__ import annotations

import os
import pathlib
import platform

import numpy as np

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cores": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_at_start": os.getloadavg()[0]}


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (for the share of other work during a window)."""
    v = [int(x) for x in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK


def net_counters() -> dict:
    """UDP datagrams and TCP segments sent by every process of this network namespace (/proc/net/snmp)."""
    lines = pathlib.Path("/proc/net/snmp").read_text().splitlines()
    table = {}
    for head, values in zip(lines[::2], lines[1::2]):
        proto = head.split(":")[0]
        table[proto] = dict(zip(head.split()[1:], (int(v) for v in values.split()[1:])))
    return {"udp_out": table["Udp"]["OutDatagrams"], "tcp_out": table["Tcp"]["OutSegs"]}


def _ms(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 3) if len(values) else None


def window_figures(parts: list[dict], server: dict, busy_s: float, end_of_drain: float) -> dict:
    """One measurement window merged over the load processes. Latencies are of delivered frames; the
    censored p99 also counts every undelivered frame, with its age at the end of the run as latency
    (a lower bound), so a relay that stalls cannot look fast by delivering little."""
    seconds = parts[0]["seconds"]
    server_cpu_s = server["user"] + server["sys"]
    rx_msgs = sum(x["rx_msgs"] for x in parts)
    lat = np.concatenate([x["latency_s"] for x in parts]).astype(np.float64)
    missing = np.concatenate([x["missing_sent_at"] for x in parts])
    censored = np.concatenate([lat, end_of_drain - missing])
    expected = sum(x["expected"] for x in parts)
    delivered = sum(x["delivered"] for x in parts)
    pose_msgs = sum(x["pose_msgs"] for x in parts)
    readers = sum(x["readers"] for x in parts)
    client_user = sum(x["cpu_user_s"] for x in parts)
    client_cpu = client_user + sum(x["cpu_sys_s"] for x in parts)
    return {
        "p50_ms": _ms(lat, 50), "p90_ms": _ms(lat, 90), "p99_ms": _ms(lat, 99), "p999_ms": _ms(lat, 99.9),
        "max_ms": _ms(lat, 100), "p99_censored_ms": _ms(censored, 99),
        "delivered_ratio": round(delivered / expected, 5) if expected else None,
        "expected": expected, "delivered": delivered, "late_over_20ms": int((lat > 0.020).sum()),
        "frames_lost_for_all": sum(x["frames_lost_for_all"] for x in parts),
        "frames_lost_for_some": sum(x["frames_lost_for_some"] for x in parts),
        "frames_lost_for_all_sent_by_stuck": sum(x["frames_lost_for_all_sent_by_stuck"] for x in parts),
        "frames_over_rate_as_sent": sum(x["frames_over_rate_as_sent"] for x in parts),
        "msgs_out_per_s": round(rx_msgs / seconds, 1),
        "msgs_per_client_read": round(rx_msgs / max(1, sum(x["rx_reads"] for x in parts)), 2),
        "bytes_per_pose_frame": round(sum(x["pose_bytes"] for x in parts) / pose_msgs, 2) if pose_msgs else None,
        "kbps_per_receiver": round(sum(x["rx_bytes"] for x in parts) * 8 / 1000 / seconds / readers, 2)
        if readers else None,
        "server_cpu_pct": round(100 * server_cpu_s / seconds, 1),
        "server_cpu_sys_pct": round(100 * server["sys"] / seconds, 1),
        "server_cpu_us_per_msg_out": round(1e6 * server_cpu_s / rx_msgs, 2) if rx_msgs else None,
        "server_ctx_switches_per_s": round(server["switches"] / seconds),
        "client_cpu_pct": round(100 * client_cpu / seconds, 1),
        "client_cpu_user_pct": round(100 * client_user / seconds, 1),
        "other_cpu_pct": round(100 * (busy_s - server_cpu_s - client_cpu) / seconds, 1),
        "seconds": round(seconds, 2),
    }


def worst_seconds(parts: list[dict], top: int = 3) -> list[dict]:
    """The seconds of the window with the highest p99 (where outliers cluster in time)."""
    t = np.concatenate([x["send_t"] for x in parts])
    lat = np.concatenate([x["latency_s"] for x in parts]).astype(np.float64)
    if not len(t):
        return []
    sec = np.floor(t - t.min()).astype(int)
    rows = []
    for s in np.unique(sec):
        v = lat[sec == s]
        rows.append({"second": int(s), "p99_ms": _ms(v, 99), "max_ms": _ms(v, 100), "n": int(len(v))})
    return sorted(rows, key=lambda r: -r["p99_ms"])[:top]


def ratio(a: float | None, b: float | None) -> float | None:
    return float(f"{a / b:.4g}") if a is not None and b else None


def bucket_drops(times, rate: float, burst: float = 3.0) -> list[int]:
    """Indices of the frames a token bucket (the server's rate limit) would drop if they arrived exactly
    at `times`: what the sender's own pacing accounts for, as opposed to jitter added on the way."""
    tokens, last, out = burst, None, []
    for i, t in enumerate(times):
        if last is not None:
            tokens = min(burst, tokens + (t - last) * rate)
        last = t
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            out.append(i)
    return out
