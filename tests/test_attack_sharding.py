"""Attack trials split across devices (``attacks.run(num_devices=...)``, ``attack.num_devices``).

The device count of the CPU backend is fixed when jax initializes, so the comparison runs in
a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (as fedjax's
for_each_client_test.py does).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from leakjax import config as lconfig
from leakjax.types import ConfigError

_SCRIPT = textwrap.dedent(
    """
    import os, shutil, tempfile
    import jax, jax.numpy as jnp, numpy as np
    from leakjax import attacks, models
    from leakjax.attacks import inverting_gradients as ig
    from leakjax.fl.observation import fedavg_observation, gradient_observation, stack
    from leakjax.fl import ClientHParams

    assert len(jax.devices()) == 8, jax.devices()
    model = models.get("cnn", 10, (8, 8, 3))
    v = model.init(jax.random.key(0))
    box = (jnp.full(3, -1.0), jnp.full(3, 1.0))
    hp = ClientHParams(lr=0.1, momentum=0.5, epochs=1, batch_size=2)

    def observations(mode, t):
        out = []
        for i in range(t):
            x = jax.random.uniform(jax.random.key(10 + i), (2, 8, 8, 3), minval=-1, maxval=1)
            y = jnp.array([i % 10, (3 * i + 1) % 10])
            if mode == "gradient":
                out.append((gradient_observation(model, v, x, y), y))
            else:
                out.append((fedavg_observation(model, v, x, y, hp), y))
        return stack([o for o, _ in out]), jnp.stack([y for _, y in out])

    def factory(t):
        obs, labels = t
        cfg = ig.IGConfig(lr=0.1, tv=1e-4, labels="fixed")
        return ig.make(obs, model, cfg, steps=6, box=box, labels=labels)

    tmp = tempfile.mkdtemp()
    for mode, t, devices in (("gradient", 8, 8), ("fedavg", 5, 4)):
        trials = observations(mode, t)
        kw = dict(steps=6, restarts=2, trials=trials, chunk=3, progress=False)
        one = attacks.run(factory, jax.random.key(1), num_devices=1, **kw)
        shards = []
        def on_chunk(done, states):
            leaf = jax.tree.leaves(states)[0]
            shards.append([a.data.shape[0] for a in leaf.addressable_shards])
        many = attacks.run(factory, jax.random.key(1), num_devices=devices, on_chunk=on_chunk, **kw)
        if t == devices:  # the states stay split: one trial per device after every chunk
            assert shards == [[1] * devices] * 2, shards
        assert many.reconstruction.images.shape == (t, 2, 8, 8, 3), many.reconstruction.images.shape
        assert many.losses.shape == (t, 2, 6)
        for name in ("best", "failed", "failed_step"):
            a, b = getattr(one, name), getattr(many, name)
            assert np.array_equal(a, b), (mode, name, a, b)
        for name in ("losses", "final_loss"):  # last-ulp differences: see the test docstring
            np.testing.assert_allclose(getattr(one, name), getattr(many, name), rtol=1e-5, atol=0)
        worst = 0.0
        for a, b in ((one.restarts.images, many.restarts.images),
                     (one.reconstruction.images, many.reconstruction.images)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=mode)
            worst = max(worst, float(np.max(np.abs(a - b))))
        assert np.all(np.isfinite(many.losses))
        print(mode, t, "trials on", devices, "devices:",
              "bit-for-bit" if worst == 0 else f"images differ by at most {worst:.2e}")
        if t % devices:  # checkpoints hold the real trials: resume on 1 device from k devices
            ck = os.path.join(tmp, mode + ".msgpack")
            attacks.run(factory, jax.random.key(1), num_devices=devices, checkpoint=ck,
                        checkpoint_every=3, **kw)
            res = attacks.run(factory, jax.random.key(1), checkpoint=ck, resume=True, **kw)
            np.testing.assert_allclose(res.restarts.images, one.restarts.images, rtol=0, atol=1e-5)
            np.testing.assert_allclose(res.losses, one.losses, rtol=1e-5, atol=0)
            print("resumed on 1 device from", devices)
    shutil.rmtree(tmp)
    print("OK")
    """
)


def test_sharded_trials_equal_one_device():
    """8 trials on 8 fake CPU devices stay split (one per device after every chunk), and they
    (and 5 trials padded to 8 on 4 devices, fedavg mode) give the images (every restart's and
    the selected ones), the selected restarts and the failure flags of the same trials on one
    device: the discrete outputs exactly, the images bit-for-bit on the development machine.

    The reported loss values are compared with ``rtol=1e-5`` instead. The trial axis is only
    split, never reduced over, so every trial runs the same arithmetic; but the scalar loss is
    a reduction over all parameters that XLA:CPU emits as a separate fusion whose vectorized
    accumulation order depends on the per-device batch (16 trial x restart rows on one device,
    2 per device on 8), which changes the rounding of the sum. Measured: on the development
    machine 10-20% of the losses differ by at most 4 ulp (1.2e-7 on ~0.3); on the CI machine's
    CPU by up to 1.9e-6 relative (18 ulp). The images are bit-for-bit equal on the development
    machine (printed as ``bit-for-bit``); since conv kernels may also tile by batch on other
    CPUs, a run elsewhere accepts |diff| <= 1e-5 and prints the largest difference instead.
    """
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    r = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "OK" in r.stdout


def test_num_devices_config_key():
    c = lconfig.base_config()
    assert c.attack.num_devices == 1
    c.data.name = "digits"
    c.attack.num_devices = 0
    lconfig.validate(c)
    c.attack.num_devices = -1
    with pytest.raises(ConfigError, match="attack.num_devices"):
        lconfig.validate(c)
