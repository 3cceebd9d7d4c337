"""LiveVcpu under threads and bad arguments: no signal state left behind, no use after free, no races.

The dangerous parts run in a child interpreter (``sys.executable -c``) whose
exit status is checked: before the fix, a refused ``run(timeout=inf)`` left a
SIGALRM handler writing into the kvm_run page, so the first alarm after
``close()`` killed the process with SIGSEGV, and ``close()`` from another
thread during a spinning guest did the same.  Nothing here asserts a time:
waits are generous bounds, and an outcome that needs a timer to go right
(the guest interrupted by ``close()`` instead of its own 5 s timeout) is
checked through the error raised.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import threading

import pytest
from conftest import ROOT

from cpuidkit import InputError, KvmError
from cpuidkit.kvm.interface import MSR_IA32_APICBASE
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.live import LiveVcpu
from cpuidkit.live.vcpu import MAX_RUN_TIMEOUT

kvm = pytest.mark.kvm
CHILD_TIMEOUT = 300  # seconds: a bound for a hung child on a loaded machine, never expected


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it must exit 0 (not -11/139) and print one JSON line last."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT
    )
    assert r.returncode == 0, f"child exited with {r.returncode} (-11 is SIGSEGV)\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- timeouts are refused before any signal state is touched ---------------------------------------

BAD_TIMEOUTS = ["math.inf", "math.nan", "1e300", "0", "-1", "-0.0", "'1'", "None.__class__", "10**400", "3600.5"]


@kvm
@pytest.mark.parametrize("timeout", BAD_TIMEOUTS)
def test_a_refused_timeout_leaves_no_handler_behind(timeout):
    out = _child(f"""
        import json, math, signal, time
        from cpuidkit import InputError
        from cpuidkit.live import LiveVcpu

        got = []
        def mine(signum, frame):
            got.append(signum)

        signal.signal(signal.SIGALRM, mine)
        watched = (signal.SIGALRM, signal.SIGURG)
        before = [signal.getsignal(s) for s in watched]
        timer_before = signal.getitimer(signal.ITIMER_REAL)
        v = LiveVcpu()
        v.run()  # the kvm_run page is mapped: a handler left pointing at it would crash after close()
        res = {{}}
        try:
            v.run(timeout={timeout}, code=b"\\xeb\\xfe")
            res["error"] = None
        except InputError as e:
            res["error"], res["where"], res["text"] = type(e).__name__, e.where, str(e)
        res["handlers_kept"] = [signal.getsignal(s) for s in watched] == before
        res["timer_kept"] = signal.getitimer(signal.ITIMER_REAL) == timer_before
        v.run()  # still usable
        v.close()
        signal.alarm(1)  # the test's own handler must get it
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        res["alarm"] = got
        print(json.dumps(res))
    """)
    assert out["error"] == "InputError" and out["where"] == "timeout", out
    assert "number of seconds" in out["text"]
    assert out["handlers_kept"] and out["timer_kept"], out
    assert out["alarm"] == [14]  # SIGALRM, handled by the test's handler


@kvm
@pytest.mark.parametrize("timeout", [math.inf, math.nan, 0, -1, "2", 1e300])
def test_a_bad_run_timeout_is_refused_by_the_constructor_and_by_run(timeout):
    with pytest.raises(InputError) as info:
        LiveVcpu(run_timeout=timeout)
    assert info.value.where == "run_timeout"
    with LiveVcpu() as v:
        v.run_timeout = timeout  # set after construction: run() checks it again
        with pytest.raises(InputError) as info:
            v.run()
        assert info.value.where == "run_timeout" and not v.has_run


@kvm
def test_the_largest_timeout_is_accepted():
    assert MAX_RUN_TIMEOUT == 3600
    with LiveVcpu(run_timeout=MAX_RUN_TIMEOUT) as v:
        v.run()  # halts at once
        v.run(timeout=MAX_RUN_TIMEOUT)


# -- close() from another thread --------------------------------------------------------------------


@kvm
def test_close_from_another_thread_interrupts_a_spinning_guest():
    """3 rounds each way: the guest loops (jmp $) with a 5 s timeout; close() comes from another thread."""
    out = _child("""
        import json, os, signal, threading, time
        from cpuidkit import KvmError
        from cpuidkit.live import LiveVcpu

        def wait_until_running(v):  # the run() is in its KVM_RUN loop once its watchdog exists
            deadline = time.monotonic() + 60
            while v._watchdog is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.1)  # and very likely inside the guest

        def spin(v, into):
            try:
                v.run(code=b"\\xeb\\xfe", timeout=5)
                into.append(["returned", None, None])
            except KvmError as e:
                into.append([e.errno_name, e.operation, str(e)])

        def after_close(v):  # every call now raises the closed-vCPU error
            names = []
            for call in (v.run, v.get_cpuid, v.get_regs, lambda: v.get_msr(0x1B), lambda: v.set_cr4(0),
                         v.supported_cpuid, lambda: v.check_extension(1)):
                try:
                    call()
                    names.append(None)
                except KvmError as e:
                    names.append(e.errno_name)
            return names

        fds = len(os.listdir("/proc/self/fd"))
        handler_before = signal.getsignal(signal.SIGURG)
        res = {"main_runs": [], "thread_runs": [], "after": []}
        for _ in range(3):  # the guest on the main thread, close() from a thread
            v = LiveVcpu()
            closer = threading.Thread(target=lambda: (wait_until_running(v), v.close()))
            closer.start()
            spin(v, res["main_runs"])
            closer.join()
            res["after"].append(after_close(v))
        res["handler_restored"] = signal.getsignal(signal.SIGURG) == handler_before
        signal.signal(signal.SIGURG, lambda *_: None)  # what a run() on another thread needs
        for _ in range(3):  # the guest on a thread, close() from the main thread
            v = LiveVcpu()
            runner = threading.Thread(target=spin, args=(v, res["thread_runs"]))
            runner.start()
            wait_until_running(v)
            v.close()
            runner.join()
            res["after"].append(after_close(v))
        res["fds_leaked"] = len(os.listdir("/proc/self/fd")) - fds
        print(json.dumps(res))
    """)
    for errno_name, operation, text in out["main_runs"] + out["thread_runs"]:
        assert (errno_name, operation) == ("EBADF", "KVM_RUN"), text  # not ETIMEDOUT: close() stopped it
        assert text == "KVM_RUN: EBADF: this LiveVcpu is closed; create a new one"
    assert len(out["main_runs"]) == len(out["thread_runs"]) == 3
    assert out["after"] == [["EBADF"] * 7] * 6
    assert out["handler_restored"] and out["fds_leaked"] == 0


@kvm
def test_close_while_other_threads_use_the_vcpu():
    """Four threads call at random while the main thread closes: only the closed error, no crash, no leak."""
    out = _child("""
        import json, os, random, signal, threading, time
        from cpuidkit import KvmError
        from cpuidkit.live import LiveVcpu

        signal.signal(signal.SIGURG, lambda *_: None)  # run() on threads
        fds = len(os.listdir("/proc/self/fd"))
        unexpected = []
        for round_ in range(20):
            v = LiveVcpu(run_timeout=0.05)
            def worker(seed):
                r = random.Random(seed)
                calls = [v.get_cpuid, v.run, lambda: v.run(code=b"\\xeb\\xfe"), v.get_regs,
                         lambda: v.get_msr(0x1B), lambda: v.set_cr4(0), lambda: v.set_cpuid(v.get_cpuid())]
                while True:
                    try:
                        r.choice(calls)()
                    except KvmError as e:
                        if e.errno_name == "EBADF":
                            return
                        if e.errno_name not in ("ETIMEDOUT", "EINVAL"):
                            unexpected.append(repr(e))
                    except Exception as e:
                        unexpected.append(repr(e))
            threads = [threading.Thread(target=worker, args=(round_ * 4 + k,)) for k in range(4)]
            for t in threads:
                t.start()
            time.sleep(0.01 * (round_ % 5))
            v.close()
            for t in threads:
                t.join()
        print(json.dumps({"unexpected": unexpected, "fds_leaked": len(os.listdir("/proc/self/fd")) - fds}))
    """)
    assert out == {"unexpected": [], "fds_leaked": 0}


# -- run() on another thread --------------------------------------------------------------------------


@kvm
def test_run_on_another_thread_needs_a_handler_and_says_so():
    out = _child("""
        import json, signal, threading
        from cpuidkit import KvmError
        from cpuidkit.live import LiveVcpu

        res = {}
        v = LiveVcpu(run_timeout=0.2)
        def attempt(key, **kw):
            try:
                v.run(**kw)
                res[key] = "ran"
            except KvmError as e:
                res[key] = [e.errno_name, str(e)]
        t = threading.Thread(target=attempt, args=("without",))
        t.start(); t.join()
        res["has_run_after_refusal"] = v.has_run
        kicks = []
        signal.signal(signal.SIGURG, lambda *_: kicks.append(1))
        for key, kw in (("halts", {}), ("spins", {"code": b"\\xeb\\xfe"})):
            t = threading.Thread(target=attempt, args=(key,), kwargs=kw)
            t.start(); t.join()
        res["handler_kept"] = signal.getsignal(signal.SIGURG) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        v.close()
        print(json.dumps(res))
    """)
    errno_name, text = out["without"]
    assert errno_name == "EOPNOTSUPP" and "main thread" in text and "SIGURG" in text
    assert out["has_run_after_refusal"] is False  # refused before anything ran
    assert out["halts"] == "ran"
    assert out["spins"][0] == "ETIMEDOUT"
    assert out["handler_kept"]


@kvm
def test_a_run_on_the_main_thread_gives_back_the_kick_handler_it_replaced():
    out = _child("""
        import json, signal
        from cpuidkit import KvmError
        from cpuidkit.live import LiveVcpu

        calls = []
        def mine(signum, frame):
            calls.append(signum)
        signal.signal(signal.SIGURG, mine)
        with LiveVcpu() as v:
            try:
                v.run(timeout=0.3, code=b"\\xeb\\xfe")
            except KvmError as e:
                errno_name = e.errno_name
        print(json.dumps({"errno": errno_name, "restored": signal.getsignal(signal.SIGURG) is mine,
                          "called": len(calls)}))
    """)
    # the kicks went to cpuidkit's own handler while the guest ran, not to the one it replaced
    assert out == {"errno": "ETIMEDOUT", "restored": True, "called": 0}


# -- the first use from two threads -------------------------------------------------------------------


@kvm
def test_two_threads_first_use_create_one_vcpu():
    with LiveVcpu() as warm:  # anything created once per process
        warm.get_cpuid()
    before = _fds()
    for round_ in range(30):
        with LiveVcpu() as v:
            barrier = threading.Barrier(3)
            results: list[object] = []

            def first_use(call, barrier=barrier, results=results):
                barrier.wait()
                try:
                    results.append(call())
                except Exception as e:  # noqa: BLE001 - reported by the assertion below
                    results.append(e)

            calls = [v.get_cpuid, v.get_regs, lambda: v.get_msr(0x1B)]
            threads = [threading.Thread(target=first_use, args=(calls[(round_ + k) % 3],)) for k in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not [r for r in results if isinstance(r, Exception)], results
            assert len(results) == 3 and v.has_vcpu
            assert _fds() == before + 3  # /dev/kvm, the VM and one vCPU
    assert _fds() == before


# -- MSR indices and values -----------------------------------------------------------------------------

BAD_MSR_INDICES = [2**32 + 0x10, 2**32, -1, 2**64, 0x10 + 0.0, "0x10", True]


@kvm
@pytest.mark.parametrize("index", BAD_MSR_INDICES, ids=repr)
def test_live_msr_index_outside_32_bits_is_refused(index):
    with LiveVcpu() as v:
        with pytest.raises(InputError) as info:
            v.get_msr(index)
        assert info.value.where == "msr index" and "0..0xffffffff" in str(info.value)
        with pytest.raises(InputError) as info:
            v.set_msr(index, 0)
        assert info.value.where == "msr index"


@kvm
@pytest.mark.parametrize("value", [2**64, -1, 1.0, "1"], ids=repr)
def test_live_msr_value_outside_64_bits_is_refused(value):
    with LiveVcpu() as v:
        with pytest.raises(InputError) as info:
            v.set_msr(MSR_IA32_APICBASE, value)
        assert info.value.where == f"msr {MSR_IA32_APICBASE:#x} value"


@kvm
def test_live_msr_0x10_is_still_read():
    with LiveVcpu() as v:
        assert isinstance(v.get_msr(0x10), int)  # IA32_TIME_STAMP_COUNTER: the low MSR itself is fine


# -- SimulatedVcpu mirrors both -------------------------------------------------------------------------

SIM_CALLS = [
    ("KVM_SET_CPUID2", lambda v: v.set_cpuid(v.stored)),
    ("KVM_GET_CPUID2", lambda v: v.get_cpuid()),
    ("KVM_SET_SREGS", lambda v: v.set_cr4(0)),
    ("KVM_SET_XCRS", lambda v: v.set_xcr0(1)),
    ("KVM_GET_XCRS", lambda v: v.get_xcr0()),
    ("KVM_SET_MSRS", lambda v: v.set_msr(0x1B, 0xFEE00900)),
    ("KVM_GET_MSRS", lambda v: v.get_msr(0x1B)),
    ("KVM_ENABLE_CAP", lambda v: v.disable_quirk("LINT0_REENABLED")),
    ("KVM_ENABLE_CAP", lambda v: v.disable_hlt_exits()),
    ("ARCH_REQ_XCOMP_GUEST_PERM", lambda v: v.grant_xfeature_permission(0)),
    ("KVM_RUN", lambda v: v.run()),
]


@pytest.mark.parametrize("operation,call", SIM_CALLS, ids=[f"{op}-{i}" for i, (op, _) in enumerate(SIM_CALLS)])
def test_simulated_vcpu_refuses_calls_after_close(operation, call):
    with SimulatedVcpu() as v:
        call(v)  # fine while open
    assert v.closed
    with pytest.raises(KvmError) as info:
        call(v)
    assert (info.value.errno_name, info.value.operation) == ("EBADF", operation)
    assert str(info.value) == f"{operation}: EBADF: this SimulatedVcpu is closed; create a new one"


@kvm
def test_simulated_and_live_closed_errors_read_alike():
    live, sim = LiveVcpu(), SimulatedVcpu()
    live.close()
    sim.close()
    for name in ("get_cpuid", "run"):
        with pytest.raises(KvmError) as got_live:
            getattr(live, name)()
        with pytest.raises(KvmError) as got_sim:
            getattr(sim, name)()
        assert type(got_live.value) is type(got_sim.value)
        assert str(got_live.value).replace("LiveVcpu", "vCPU") == str(got_sim.value).replace("SimulatedVcpu", "vCPU")


@pytest.mark.parametrize("index", BAD_MSR_INDICES, ids=repr)
def test_simulated_msr_index_outside_32_bits_is_refused(index):
    v = SimulatedVcpu()
    with pytest.raises(InputError) as info:
        v.get_msr(index)
    assert info.value.where == "msr index" and "0..0xffffffff" in str(info.value)
    with pytest.raises(InputError) as info:
        v.set_msr(index, 0)
    assert info.value.where == "msr index"
    with pytest.raises(InputError) as info:
        v.set_msr(0x1B, 2**64)
    assert info.value.where == "msr 0x1b value"
