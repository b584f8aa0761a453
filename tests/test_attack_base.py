"""The attack run loop: chunks, restarts, trials, NaN handling, best-restart selection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax.attacks import Attack, Reconstruction, run
from leakjax.attacks.signals import catch_signals


def toy(target, lr=0.1):
    """Gradient descent on ||x - target||^2."""

    def init(key):
        return {"x": jax.random.normal(key, target.shape), "i": jnp.int32(0)}

    def step(state, key):
        del key
        loss = jnp.sum((state["x"] - target) ** 2)
        x = state["x"] - lr * 2 * (state["x"] - target)
        return {"x": x, "i": state["i"] + 1}, {"loss": loss}

    def result(state):
        return Reconstruction(images=state["x"], labels=jnp.zeros(target.shape[0], jnp.int32))

    return Attack(init, step, result)


T = jnp.ones((2, 4, 4, 1)) * 0.5


def test_run_converges_and_records_losses():
    res = run(toy(T), jax.random.key(0), steps=50, restarts=3, chunk=20, progress=False)
    assert res.reconstruction.images.shape == (1, 2, 4, 4, 1)
    assert res.restarts.images.shape == (1, 3, 2, 4, 4, 1)
    assert res.losses.shape == (1, 3, 50)
    assert np.all(np.diff(res.losses[0, 0]) <= 0)  # monotone for this convex toy
    np.testing.assert_allclose(res.reconstruction.images[0], np.asarray(T), atol=1e-3)
    assert not res.failed.any() and res.steps == 50


def test_best_restart_is_lowest_final_loss():
    res = run(toy(T, lr=0.001), jax.random.key(1), steps=5, restarts=4, progress=False)
    assert res.best[0] == int(np.argmin(res.final_loss[0]))
    # the chosen reconstruction is that restart's
    np.testing.assert_array_equal(res.reconstruction.images[0], res.restarts.images[0, res.best[0]])


def test_trials_vmapped_equal_a_loop():
    targets = jnp.stack([T, -T, 2 * T])

    res = run(
        lambda t: toy(t), jax.random.key(2), steps=60, restarts=2, trials=targets, progress=False
    )
    for i in range(3):
        one = run(
            lambda t: toy(t),
            jax.random.key(2),
            steps=60,
            restarts=2,
            trials=targets[i : i + 1],
            progress=False,
        )
        # same keys per (trial index, restart) only for trial 0; compare converged images instead
        np.testing.assert_allclose(
            res.reconstruction.images[i], one.reconstruction.images[0], atol=1e-4
        )
    # and trial 0 is bit-identical (same keys)
    one = run(
        lambda t: toy(t),
        jax.random.key(2),
        steps=60,
        restarts=2,
        trials=targets[:1],
        progress=False,
    )
    np.testing.assert_array_equal(res.losses[0], one.losses[0])


def _nan_attack(target, nan_at=7):
    """Restart whose init x[0,0,0,0] > 0 returns NaN loss from step nan_at on."""

    def init(key):
        return {"x": jax.random.normal(key, target.shape), "i": jnp.int32(0)}

    def step(state, key):
        del key
        bad = (state["i"] >= nan_at) & (state["x"][0, 0, 0, 0] > 0.5)
        loss = jnp.where(bad, jnp.nan, jnp.sum((state["x"] - target) ** 2))
        x = jnp.where(bad, jnp.nan, state["x"] - 0.05 * (state["x"] - target))
        return {"x": x, "i": state["i"] + 1}, {"loss": loss}

    return Attack(init, step, lambda s: Reconstruction(images=s["x"]))


def test_nan_restarts_are_stopped_and_reported_others_go_on():
    key = jax.random.key(0)
    restarts = 16
    init_x = jax.vmap(
        lambda r: jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 0), r), T.shape)
    )(jnp.arange(restarts))
    will_fail = np.asarray(init_x[:, 0, 0, 0, 0] > 0.5)
    assert will_fail.any() and (~will_fail).any()
    res = run(_nan_attack(T), key, steps=40, restarts=restarts, chunk=16, progress=False)
    np.testing.assert_array_equal(res.failed[0], will_fail)
    np.testing.assert_array_equal(res.failed_step[0][will_fail], 7)
    assert (res.failed_step[0][~will_fail] == -1).all()
    # failed restarts keep their last finite state; healthy ones finished all steps
    assert np.isfinite(res.restarts.images).all()
    assert np.isnan(res.losses[0][will_fail][:, 7:]).all()
    assert np.isfinite(res.losses[0][~will_fail]).all()
    assert not will_fail[res.best[0]]
    assert not res.trial_failed[0]


def test_all_restarts_failing_marks_the_trial():
    # an attack that always fails at step 3
    def init(key):
        return {"x": jax.random.normal(key, T.shape), "i": jnp.int32(0)}

    def step(state, key):
        loss = jnp.where(state["i"] >= 3, jnp.inf, 1.0)
        return {"x": state["x"], "i": state["i"] + 1}, {"loss": loss}

    res = run(
        Attack(init, step, lambda s: Reconstruction(s["x"])),
        jax.random.key(0),
        steps=10,
        restarts=2,
        progress=False,
    )
    assert res.trial_failed[0] and (res.failed_step[0] == 3).all()


def test_steps_not_multiple_of_chunk_and_progress_output(capsys):
    res = run(toy(T), jax.random.key(0), steps=25, restarts=1, chunk=10, progress=True, name="toy")
    assert res.losses.shape == (1, 1, 25)
    out = capsys.readouterr().out
    assert "[toy] step 25/25" in out and "ETA" in out and "loss_min" in out
    assert "best_loss" not in out  # issue 33 #13: it is the current minimum, not a best
    assert out.splitlines()[0].startswith("[toy] compiling")  # said before the first chunk


def test_bad_steps():
    with pytest.raises(ValueError, match="steps"):
        run(toy(T), jax.random.key(0), steps=0)


class _Kill(Exception):
    pass


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    ck = tmp_path / "ck.msgpack"
    kw = dict(steps=50, restarts=3, chunk=10, progress=False)
    full = run(toy(T, lr=0.01), jax.random.key(5), **kw)

    def killer(done, states):
        if done == 30:
            raise _Kill

    with pytest.raises(_Kill):
        run(
            toy(T, lr=0.01),
            jax.random.key(5),
            checkpoint=ck,
            checkpoint_every=10,
            on_chunk=killer,
            **kw,
        )
    assert ck.exists()
    resumed = run(toy(T, lr=0.01), jax.random.key(5), checkpoint=ck, resume=True, **kw)
    np.testing.assert_array_equal(resumed.reconstruction.images, full.reconstruction.images)
    np.testing.assert_array_equal(resumed.losses, full.losses)
    np.testing.assert_array_equal(resumed.final_loss, full.final_loss)
    # a checkpoint written for other settings is refused
    with pytest.raises(ValueError, match="checkpoint"):
        run(
            toy(T, lr=0.01),
            jax.random.key(5),
            checkpoint=ck,
            resume=True,
            steps=60,
            restarts=3,
            chunk=10,
            progress=False,
        )


def test_sigterm_checkpoints_and_raises(tmp_path):
    import os
    import signal

    from leakjax.attacks.signals import Interrupted

    ck = tmp_path / "ck.msgpack"
    kw = dict(steps=40, restarts=2, chunk=10, progress=False)

    def term(done, states):
        if done == 20:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted) as info:
        run(toy(T, lr=0.01), jax.random.key(6), checkpoint=ck, on_chunk=term, **kw)
    assert info.value.steps_done == 20 and ck.exists()
    resumed = run(toy(T, lr=0.01), jax.random.key(6), checkpoint=ck, resume=True, **kw)
    full = run(toy(T, lr=0.01), jax.random.key(6), **kw)
    np.testing.assert_array_equal(resumed.reconstruction.images, full.reconstruction.images)
    # the handler was restored
    assert signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL,
        signal.default_int_handler,
        None,
    ) or callable(signal.getsignal(signal.SIGTERM))


def _noisy(target):
    """Gradient descent on ||x - target||^2 plus noise drawn from the step key."""

    def init(key):
        return {"x": jax.random.normal(key, target.shape)}

    def step(state, key):
        loss = jnp.sum((state["x"] - target) ** 2)
        x = state["x"] - 0.1 * (state["x"] - target) + 0.01 * jax.random.normal(key, target.shape)
        return {"x": x}, {"loss": loss}

    return Attack(init, step, lambda s: Reconstruction(images=s["x"]))


@pytest.mark.parametrize("vmap_chunk", [1, 2])
def test_mapped_restarts_and_trials_equal_vmapped(vmap_chunk):
    targets = jnp.stack([T, -T, 2 * T])
    kw = dict(steps=12, restarts=3, trials=targets, chunk=5, progress=False)
    ref = run(_noisy, jax.random.key(3), **kw)
    got = run(_noisy, jax.random.key(3), vmap_chunk=vmap_chunk, **kw)
    np.testing.assert_allclose(got.losses, ref.losses, rtol=1e-6)
    np.testing.assert_allclose(got.restarts.images, ref.restarts.images, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got.best, ref.best)


def test_mapped_restarts_still_stop_nan_restarts():
    ref = run(_nan_attack(T), jax.random.key(0), steps=20, restarts=8, chunk=8, progress=False)
    got = run(
        _nan_attack(T),
        jax.random.key(0),
        steps=20,
        restarts=8,
        chunk=8,
        progress=False,
        vmap_chunk=1,
    )
    assert ref.failed.any()
    np.testing.assert_array_equal(got.failed, ref.failed)
    np.testing.assert_array_equal(got.failed_step, ref.failed_step)


def test_resolve_vmap_chunk():
    from leakjax.attacks import resolve_vmap_chunk
    from leakjax.types import ConfigError

    cpu = jax.default_backend() == "cpu"
    assert resolve_vmap_chunk(-1, "fedavg") == (1 if cpu else 0)
    assert resolve_vmap_chunk(-1, "gradient") == 0
    assert resolve_vmap_chunk(4, "fedavg") == 4
    assert resolve_vmap_chunk(-1, "gradient", True) == (1 if cpu else 0)
    with pytest.raises(ConfigError, match="attack.vmap_chunk"):
        resolve_vmap_chunk(-2, "fedavg")
    # DLG/iDLG: sequential only with the zoom line search
    from leakjax import attacks
    from leakjax.config import base_config

    acfg = base_config().attack
    for name in ("dlg", "idlg"):
        assert attacks.get(name).sequential(acfg)
        acfg.linesearch = "none"
        assert not attacks.get(name).sequential(acfg)
        del acfg["linesearch"]
    assert not attacks.get("ig").sequential(acfg)


def _signalling(target, at_step, signum):
    """`toy` whose step sends ``signum`` to this process (from a host callback, i.e. while
    the jitted chunk runs) when it computes step ``at_step``."""
    import os

    base = toy(target, lr=0.01)

    def send(i):
        if int(i) == at_step:
            os.kill(os.getpid(), signum)

    def step(state, key):
        jax.debug.callback(send, state["i"])
        return base.step(state, key)

    return Attack(base.init, step, base.result)


@pytest.mark.parametrize("steps,chunk", [(30, 10), (30, 30)])
def test_signal_during_the_last_chunk_returns_the_results_and_resumes_bit_identically(
    tmp_path, capsys, steps, chunk
):
    """Issue 33 #3: every step is done when the last chunk ends, so the run returns its
    results (it used to raise `Interrupted` and lose them); the checkpoint is still written
    and a resume from it, which has nothing left to run, compiles no chunk."""
    import signal

    ck = tmp_path / "ck.msgpack"
    kw = dict(steps=steps, restarts=2, chunk=chunk, progress=False)
    full = run(toy(T, lr=0.01), jax.random.key(7), **kw)
    got = run(_signalling(T, steps - 3, signal.SIGINT), jax.random.key(7), checkpoint=ck, **kw)
    assert ck.exists()
    resumed = run(toy(T, lr=0.01), jax.random.key(7), checkpoint=ck, resume=True,
                  **{**kw, "progress": True})  # fmt: skip
    assert "compiling" not in capsys.readouterr().out
    for res in (got, resumed):
        np.testing.assert_array_equal(res.reconstruction.images, full.reconstruction.images)
        np.testing.assert_array_equal(res.restarts.images, full.restarts.images)
        np.testing.assert_array_equal(res.losses, full.losses)
        np.testing.assert_array_equal(res.best, full.best)
    # without a checkpoint path too; inside a caller's catch_signals the caller sees the flag
    with catch_signals() as stop:
        got = run(_signalling(T, steps - 1, signal.SIGTERM), jax.random.key(7), **kw)
        assert stop.signum == signal.SIGTERM
    np.testing.assert_array_equal(got.reconstruction.images, full.reconstruction.images)


def test_signal_is_acknowledged_while_the_chunk_runs(tmp_path, capfd):
    """Issue 33 #3: the flag is set and "stopping after this chunk..." printed while the
    jitted chunk still runs (Python's own handler waits for the main thread, i.e. for the
    chunk to end); the run then stops after that chunk."""
    import os
    import signal
    import time

    from leakjax.attacks import signals
    from leakjax.attacks.signals import Interrupted

    base, seen = toy(T, lr=0.01), []

    def send(i):
        if int(i) == 5:
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 10
            while not signals._active and time.monotonic() < deadline:
                time.sleep(0.01)
            seen.append(bool(signals._active))

    def step(state, key):
        jax.debug.callback(send, state["i"])
        return base.step(state, key)

    ck = tmp_path / "ck.msgpack"
    with pytest.raises(Interrupted) as info:
        run(Attack(base.init, step, base.result), jax.random.key(7), steps=40, chunk=20,
            checkpoint=ck, progress=False)  # fmt: skip
    assert seen == [True] and info.value.steps_done == 20 and ck.exists()
    assert "SIGINT received: stopping after this chunk..." in capfd.readouterr().err


def test_resumed_run_reports_the_time_of_all_parts(tmp_path):
    import os
    import signal
    import time

    from leakjax.attacks.signals import Interrupted

    ck = tmp_path / "ck.msgpack"
    kw = dict(steps=40, restarts=2, chunk=10, progress=False)

    def slow_then_term(done, states):
        time.sleep(0.2)  # part 1 takes >= 0.4 s
        if done == 20:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted):
        run(toy(T, lr=0.01), jax.random.key(8), checkpoint=ck, on_chunk=slow_then_term, **kw)
    resumed = run(toy(T, lr=0.01), jax.random.key(8), checkpoint=ck, resume=True, **kw)
    assert len(resumed.seconds_parts) == 2
    assert resumed.seconds_parts[0] >= 0.4
    assert resumed.seconds == pytest.approx(sum(resumed.seconds_parts))
    assert resumed.seconds > resumed.seconds_parts[1]
    one = run(toy(T, lr=0.01), jax.random.key(8), **kw)
    assert len(one.seconds_parts) == 1 and one.seconds == pytest.approx(one.seconds_parts[0])


def test_step_is_traced_once_across_chunks():
    import chex

    chex.clear_trace_counter()
    a = toy(T, lr=0.01)
    step = chex.assert_max_traces(a.step, n=1)
    res = run(Attack(a.init, step, a.result), jax.random.key(9), steps=30, chunk=10,
              restarts=2, progress=False)  # fmt: skip
    assert res.losses.shape == (1, 2, 30)
