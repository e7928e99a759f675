"""Creative capsule: a score-based generative model of scikit-learn's 8x8 handwritten digits.

Data: `sklearn.datasets.load_digits` (1,797 images, 8x8, intensities 0..16), scaled to
x = intensity / 8 - 1 in [-1, 1] and flattened to 64 values.

Model: a variance-preserving SDE (Song et al. 2021; `idf_jax.thermo.diffusion.VPSDE`) and an
Equinox MLP eps_theta(x_t, t) that predicts the noise, with score(x, t) = -eps_theta / s(t)
(s(t) the marginal standard deviation). Training minimises the denoising score-matching loss
`idf_jax.thermo.diffusion.dsm_loss` (lambda(t) = s(t)^2 weighting, i.e. ||eps_theta - z||^2) with
optax Adam. Sampling: the reverse SDE (`sample_reverse`, Euler-Maruyama) or the
probability-flow ODE (`sample_probability_flow`, diffrax Tsit5).

Capsule. The energy lives in latent space: the state is z ~ N(0, I_64) with
E(z) = |z|^2 / 2 (the prior, exact at temperature 1), and `decode(z)` pushes z through the
probability-flow ODE (a deterministic bijection from t = 1 to t = t_min) and returns an 8x8
image with intensities 0..16. Sampling the capsule with any sampler and decoding therefore
draws from the model's distribution; lower temperatures give "typical" (low-norm) latents.

Quality (`evaluate_samples`): a classifier (scikit-learn MLP, one hidden layer of 128 ReLU
units) trained on the real training split labels generated digits; we report the share
classified with confidence > 0.9 and the Frechet distance between the hidden-layer features
of generated and real (held-out) digits, FD = |m1 - m2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from idf_jax import diffusion as dfn
from idf_jax._io import atomic_write

from ._base import Capsule, register

if TYPE_CHECKING:
    from sklearn.neural_network import MLPClassifier

__all__ = [
    "DigitClassifier",
    "ScoreMLP",
    "TrainResult",
    "digits",
    "evaluate_samples",
    "frechet_distance",
    "load_digits_data",
    "sample_digits",
    "save_grid",
    "train_digit_score_model",
    "train_classifier",
]

SHAPE = (64,)


def load_digits_data(
    test_fraction: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test, y_train, y_test), the order of `train_test_split`: x in [-1, 1],
    shape (n, 64); labels 0..9; a stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    images, labels = load_digits(return_X_y=True)
    x = np.asarray(images, np.float32) / 8.0 - 1.0
    y = np.asarray(labels)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return np.asarray(x_tr), np.asarray(x_te), np.asarray(y_tr), np.asarray(y_te)


def to_image(x) -> np.ndarray:
    """(..., 64) model space -> (..., 8, 8) intensities in [0, 16]."""
    x = np.asarray(x, np.float64)
    return np.clip((x + 1.0) * 8.0, 0.0, 16.0).reshape(*x.shape[:-1], 8, 8)


class ScoreMLP(eqx.Module):
    """eps_theta(x, t): MLP on [x, Fourier features of t]; score = -eps_theta / s(t).

    The Fourier frequencies are fixed (not trained): features sin / cos(2 pi w t),
    w ~ N(0, fourier_scale^2).
    """

    layers: list
    freqs: Array
    sde: dfn.VPSDE

    def __init__(
        self,
        key,
        width: int = 256,
        depth: int = 3,
        num_fourier: int = 16,
        fourier_scale: float = 16.0,
        sde: dfn.VPSDE | None = None,
    ):
        if width < 1 or depth < 1 or num_fourier < 1:
            raise ValueError("width, depth and num_fourier must be >= 1")
        kf, *ks = jax.random.split(key, depth + 2)
        self.freqs = fourier_scale * jax.random.normal(kf, (num_fourier,))
        sizes = [SHAPE[0] + 2 * num_fourier] + [width] * depth + [SHAPE[0]]
        self.layers = [eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], ks)]
        self.sde = dfn.VPSDE() if sde is None else sde

    def eps(self, x: Float[Array, "64"], t) -> Float[Array, "64"]:
        w = jax.lax.stop_gradient(self.freqs)
        h = jnp.concatenate([x, jnp.sin(2 * math.pi * w * t), jnp.cos(2 * math.pi * w * t)])
        for layer in self.layers[:-1]:
            h = jax.nn.silu(layer(h))
        return self.layers[-1](h)

    def __call__(self, x: Float[Array, "64"], t) -> Float[Array, "64"]:
        """score(x, t) = -eps_theta(x, t) / s(t)."""
        _, s = self.sde.marginal(t)
        return -self.eps(x, t) / s


class TrainResult(NamedTuple):
    model: ScoreMLP
    loss_history: np.ndarray  # (num_steps,) DSM loss per step (one minibatch)


def train_digit_score_model(
    key: PRNGKeyArray,
    x_train: Float[ArrayLike, "n 64"],
    *,
    num_steps: int = 20000,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    width: int = 256,
    depth: int = 3,
    chunk: int = 500,
) -> TrainResult:
    """Train a ScoreMLP with the DSM loss (Adam, cosine decay to 1% with 2% warm-up).

    Steps run in jitted `lax.scan` chunks of `chunk` steps.
    """
    x_train = jnp.asarray(x_train, jnp.float32)
    if x_train.ndim != 2 or x_train.shape[1] != SHAPE[0]:
        raise ValueError(f"x_train must have shape (n, 64), got {x_train.shape}")
    for name, v in (("num_steps", num_steps), ("batch_size", batch_size), ("chunk", chunk)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    k_model, k_train = jax.random.split(key)
    model = ScoreMLP(k_model, width=width, depth=depth)
    sched = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, max(1, num_steps // 50), num_steps, learning_rate * 0.01
    )
    opt = optax.adam(sched)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = opt.init(params)
    n = x_train.shape[0]

    def loss_fn(params, xb, k):
        m = eqx.combine(params, static)
        return dfn.dsm_loss(m.sde, m, xb, k)

    @jax.jit
    def run_chunk(params, opt_state, keys):
        def body(carry, k):
            params, opt_state = carry
            k_idx, k_loss = jax.random.split(k)
            idx = jax.random.randint(k_idx, (batch_size,), 0, n)
            loss, g = jax.value_and_grad(loss_fn)(params, x_train[idx], k_loss)
            upd, opt_state = opt.update(g, opt_state, params)
            return (optax.apply_updates(params, upd), opt_state), loss

        return jax.lax.scan(body, (params, opt_state), keys)

    keys = jax.random.split(k_train, num_steps)
    hist = []
    for start in range(0, num_steps, chunk):
        (params, opt_state), losses = run_chunk(params, opt_state, keys[start : start + chunk])
        hist.append(np.asarray(losses))
    return TrainResult(eqx.combine(params, static), np.concatenate(hist))


def sample_digits(
    model: ScoreMLP,
    key: PRNGKeyArray,
    num_samples: int,
    method: str = "sde",
    num_steps: int = 500,
    t_min: float = 1e-3,
) -> Float[Array, "num_samples 64"]:
    """Generate digits (model space, [-1, 1] scale) with the reverse SDE ('sde', Euler-
    Maruyama, `num_steps` steps) or the probability-flow ODE ('ode', diffrax Tsit5)."""
    if method == "sde":
        return dfn.sample_reverse(
            model.sde, model, key, SHAPE, num_samples, num_steps=num_steps, t_min=t_min
        )
    if method == "ode":
        return dfn.sample_probability_flow(
            model.sde, model, key, SHAPE, num_samples, t_min=t_min, rtol=1e-4, atol=1e-4
        )
    raise ValueError(f"method must be 'sde' or 'ode', got {method!r}")


# --------------------------------------------------------------------------- evaluation


class DigitClassifier(NamedTuple):
    """A fitted scikit-learn MLP classifier of the real digits and its test accuracy."""

    clf: MLPClassifier
    test_accuracy: float

    def features(self, x: ArrayLike) -> np.ndarray:
        """Hidden-layer (ReLU) activations, (n, 128)."""
        x = np.asarray(x, np.float64).reshape(-1, 64)
        return np.maximum(x @ self.clf.coefs_[0] + self.clf.intercepts_[0], 0.0)

    def predict_proba(self, x: ArrayLike) -> np.ndarray:
        """Class probabilities (n, 10) of images in model space (..., 64)."""
        return np.asarray(self.clf.predict_proba(np.asarray(x, np.float64).reshape(-1, 64)))


def train_classifier(x_train, y_train, x_test, y_test, seed: int = 0) -> DigitClassifier:
    """scikit-learn MLP (128 ReLU units, Adam, L2 1e-3, 150 epochs) on the real training split."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(128,), alpha=1e-3, max_iter=150, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fixed epoch budget on purpose
        clf.fit(np.asarray(x_train, np.float64), y_train)
    acc = float(clf.score(np.asarray(x_test, np.float64), y_test))
    return DigitClassifier(clf, acc)


def frechet_distance(f1, f2) -> float:
    """FD between Gaussians fitted to two feature sets (n, d):
    |m1 - m2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2))."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise ValueError(f"need two (n >= 2, d) feature sets, got {f1.shape} and {f2.shape}")
    m1, m2 = f1.mean(0), f2.mean(0)
    c1, c2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    # tr (C1 C2)^(1/2) = tr (C1^(1/2) C2 C1^(1/2))^(1/2): symmetric PSD, stable when singular
    e1, v1 = np.linalg.eigh(c1)
    r1 = (v1 * np.sqrt(np.clip(e1, 0, None))) @ v1.T
    e = np.linalg.eigvalsh(r1 @ c2 @ r1)
    tr_covmean = np.sum(np.sqrt(np.clip(e, 0, None)))
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2.0 * tr_covmean)


def evaluate_samples(clf: DigitClassifier, samples, x_reference) -> dict:
    """Share of samples labelled with confidence > 0.9, mean confidence, class histogram
    and FD to the reference digits in the classifier's feature space."""
    x = np.clip(np.asarray(samples, np.float64).reshape(-1, 64), -1.0, 1.0)
    p = clf.predict_proba(x)
    conf = p.max(1)
    return {
        "share_confident": float(np.mean(conf > 0.9)),
        "mean_confidence": float(conf.mean()),
        "class_counts": np.bincount(p.argmax(1), minlength=10).tolist(),
        "frechet_distance": frechet_distance(clf.features(x), clf.features(x_reference)),
    }


def save_grid(path, samples, nrow: int = 10, title: str | None = None) -> None:
    """Write a PNG grid of 8x8 digits (model space) to `path` (written atomically)."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgs = to_image(np.asarray(samples).reshape(-1, 64))
    ncol = int(math.ceil(len(imgs) / nrow))
    fig, axes = plt.subplots(ncol, nrow, figsize=(nrow * 0.6, ncol * 0.6 + (0.4 if title else 0)))
    for ax, im in zip(np.ravel(axes), list(imgs) + [None] * (ncol * nrow - len(imgs))):
        ax.axis("off")
        if im is not None:
            ax.imshow(im, cmap="gray_r", vmin=0, vmax=16)
    if title:
        fig.suptitle(title, fontsize=8)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- capsule


@register(
    "creative.digits",
    "Score-based generative model of sklearn 8x8 digits; latent N(0, I) energy decoded by the "
    "probability-flow ODE",
)
def digits(
    model: ScoreMLP | None = None, num_train_steps: int = 4000, seed: int = 0, t_min: float = 1e-3
) -> Capsule:
    """Digits capsule: E(z) = |z|^2 / 2 over latents z in R^64; decode(z) = PF-ODE(z) image.

    Args:
        model: a trained ScoreMLP; None trains one on the training split for
            `num_train_steps` steps (a few minutes on CPU).
        seed: training seed when `model` is None.
        t_min: end time of the probability-flow ODE.

    Returns:
        Capsule whose decode gives {'image': (8, 8) intensities 0..16, 'x': (64,) model
        space}; the trained ScoreMLP is the capsule's `model`.
    """
    if model is None:
        x_train = load_digits_data()[0]
        model = train_digit_score_model(
            jax.random.key(seed), x_train, num_steps=num_train_steps
        ).model
    if not isinstance(model, ScoreMLP):
        raise ValueError(f"model must be a ScoreMLP, got {type(model).__name__}")

    def energy_fn(z):
        return 0.5 * jnp.sum(z**2)

    def init(key, num_chains):
        return jax.random.normal(key, (num_chains, *SHAPE))

    def decode(z):
        x = dfn.probability_flow(
            model.sde, model, jnp.asarray(z, jnp.float32), t1=t_min, rtol=1e-4, atol=1e-4
        )
        return {"image": to_image(x), "x": np.asarray(x)}

    return Capsule(
        name="creative.digits",
        energy_fn=energy_fn,
        init=init,
        decode=decode,
        params={"t_min": t_min},
        description="8x8 digits from a score model; latent energy, PF-ODE decode",
        model=model,
    )
