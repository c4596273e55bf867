"""Many instances with a proxy device stopped all at once (issue 14):
each stop's time, the slowest, and the failures, round after round.

A coved on a fresh root ``/tmp/covebench-stop-XXXX`` gets busybox; each
round launches ``--count`` instances (no NIC, ``sleep``), each with a proxy
device publishing a free loopback port (``listen=tcp:127.0.0.1:PORT
connect=tcp:127.0.0.1:80``: the forwarder process a published port runs),
then stops them all at once, forced, on ``--threads`` threads (``PUT
.../state {"action": "stop", "force": true}`` and a wait on the operation,
as the session spawner does), and prints the median, p95 and slowest stop,
the wall clock of the whole batch and every failure. ``--rounds`` repeats
it (the instances are started again). Everything made is removed at the
end; never asserted.

    sudo .venv/bin/python bench/stopmany.py [--count 100] [--threads 100] [--rounds 4]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from _coved import cpu_seconds, private_coved


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _watch(done: threading.Event, after: float, pid: int, out: Path) -> None:
    """Once ``after`` seconds pass before ``done``: coved's threads and the
    host's conmon, runc and forwarder processes into ``out``, every 5 s."""
    n = 0
    while not done.wait(after if n == 0 else 5.0):
        out.mkdir(parents=True, exist_ok=True)
        spy = shutil.which("py-spy")
        with open(out / f"dump{n}.txt", "w") as f:
            f.write(f"at {time.strftime('%H:%M:%S')}\n")
            f.flush()
            if spy is None:
                f.write("(no py-spy on PATH: pip install py-spy for coved's threads)\n")
            else:
                subprocess.run([spy, "dump", "--pid", str(pid)], stdout=f, stderr=f,
                               check=False)
            subprocess.run(["ps", "-eo", "pid,ppid,stat,etimes,wchan:32,args", "--sort=pid"],
                           stdout=f, stderr=f, check=False)
        print(f"    (dump {n} in {out})", flush=True)
        n += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--threads", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--no-proxy", action="store_true", help="launch without the proxy device")
    ap.add_argument("--nic", action="store_true", help="a NIC on the default network too")
    ap.add_argument("--dump-after", type=float, default=12.0,
                    help="a batch still running after this many seconds gets coved's threads "
                         "dumped (py-spy, when installed) with the helper processes, to --dump-dir")
    ap.add_argument("--dump-dir", default="/tmp/stopmany-dumps")
    ap.add_argument("--record", default="",
                    help="py-spy record coved during each stop batch into RECORD-N.txt "
                         "(collapsed stacks, with idle threads)")
    ap.add_argument("--delete", action="store_true",
                    help="each thread deletes its instance after the stop (the hub's stop); "
                         "each round launches them anew")
    args = ap.parse_args()
    names = [f"covetest-s{i:03d}" for i in range(args.count)]
    bad = 0
    with private_coved("stop") as coved:
        c = coved.client

        def launch(name: str) -> None:
            body_devices = {} if args.no_proxy else {"p": {
                "type": "proxy", "listen": f"tcp:127.0.0.1:{_free_port()}",
                "connect": "tcp:127.0.0.1:80"}}
            r = c.raw("POST", "/1.0/instances", {
                "name": name, "source": {"type": "image", "alias": "busybox"},
                "config": {"cove.cmd": "sleep 1000000"}, "start": True,
                "devices": {**({} if args.nic else {"eth0": {"type": "none"}}),
                            **body_devices}})
            c.wait_operation(r.json()["operation"].rsplit("/", 1)[-1], 300)
            coved.made.append(name)

        def start(name: str) -> None:
            c.change_state(name, "start").wait(300)

        def stop(name: str) -> tuple[float, str]:
            t = time.monotonic()
            err = ""
            try:
                r = c.raw("PUT", f"/1.0/instances/{name}/state",
                          {"action": "stop", "force": True, "timeout": -1})
                c.wait_operation(r.json()["operation"].rsplit("/", 1)[-1], 120)
                if args.delete:
                    r = c.raw("DELETE", f"/1.0/instances/{name}")
                    c.wait_operation(r.json()["operation"].rsplit("/", 1)[-1], 120)
                    coved.made.remove(name)
            except Exception as e:  # noqa: BLE001 - a bench records every failure
                err = f"{type(e).__name__}: {e}"
            return time.monotonic() - t, err

        try:
            for rnd in range(args.rounds):
                t = time.monotonic()
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(launch if rnd == 0 or args.delete else start, names))
                up = time.monotonic() - t
                time.sleep(1)
                t = time.monotonic()
                done = threading.Event()
                watchdog = threading.Thread(target=_watch, daemon=True, args=(
                    done, args.dump_after, coved.pid, Path(args.dump_dir) / f"round{rnd + 1}"))
                watchdog.start()
                spy = None
                if args.record:
                    spy = subprocess.Popen(
                        [shutil.which("py-spy") or "py-spy", "record",
                         "--pid", str(coved.pid), "--idle", "--threads", "-f", "raw",
                         "-r", "50", "-o", f"{args.record}-{rnd + 1}.txt"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                cpu = cpu_seconds(coved.pid, children=False)
                with ThreadPoolExecutor(args.threads) as pool:
                    res = list(pool.map(stop, names))
                wall = time.monotonic() - t
                cpu = cpu_seconds(coved.pid, children=False) - cpu
                done.set()
                watchdog.join()
                if spy is not None:
                    spy.send_signal(2)  # py-spy writes its file on SIGINT
                    spy.wait(30)
                times = sorted(d for d, _ in res)
                errs = [(n, e) for n, (_, e) in zip(names, res, strict=True) if e]
                bad += bool(errs) or times[-1] > 20
                print(f"round {rnd + 1}: {args.count} up in {up:.1f}s; stop all on "
                      f"{args.threads} threads{' (and delete)' if args.delete else ''}: wall {wall:.1f}s, median "
                      f"{statistics.median(times):.2f}s, p95 "
                      f"{times[int(0.95 * (len(times) - 1))]:.2f}s, slowest {times[-1]:.2f}s, "
                      f"over 20 s: {sum(x > 20 for x in times)}, failed: {len(errs)}; coved's own CPU "
                      f"{cpu:.1f}s ({100 * cpu / wall:.0f}%)", flush=True)
                for n, e in errs[:5]:
                    print(f"    {n}: {e}", flush=True)
        finally:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(coved.remove, list(coved.made)))
    print(f"rounds with a stall (a stop over 20 s or a failure): {bad} of {args.rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
