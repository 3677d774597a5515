"""The methods the training and evaluation code call on a VAE family, written down once.

`SequentialAutoencoder` is what training, reconstruction and voice conversion need; FHVAE offers only it.
`SequentialVAE` adds the priors' samplers that Table 1's generation and the figures draw from; S3VAE, DSVAE
and Unordered offer it. The families are not subclasses: `isinstance` / `issubclass` check the methods.

Shapes: B batch, T time, D_f static latent, D_z dynamic latent. Frames are images (B, T, C, H, W) or
feature vectors (B, T, D).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from models.blocks import Gaussian


@runtime_checkable
class SequentialAutoencoder(Protocol):
    def forward(self, x: Tensor) -> Any:
        """One training pass over frames x: the posteriors, their samples and the reconstruction, in the
        family's output dataclass (what its `loss` reads)."""
        ...

    def encode(self, x: Tensor) -> tuple[Gaussian, Gaussian]:
        """q(z_f | x) (B, D_f) and q(z_1:T | x) (B, T, D_z); FHVAE's z1 is one per segment, (B, D_z)."""
        ...

    def decode(self, static: Tensor, dynamic: Tensor) -> Tensor:
        """Frames (B, T, ...) from z_f (B, D_f) and z_1:T (B, T, D_z)."""
        ...

    def loss(
        self, x: Tensor, out: Any, targets: dict[str, Tensor], *, dataset_size: int
    ) -> dict[str, Tensor]:
        """The objective's terms on frames x and `forward(x)`, per clip and averaged over B, the total under
        "loss". `targets` holds the batch's labels (a family reads only those it trains on) and
        `dataset_size` is N, the training clips, for the minibatch estimators."""
        ...


@runtime_checkable
class SequentialVAE(SequentialAutoencoder, Protocol):
    def sample_static(self, batch: int, like: Tensor) -> Tensor:
        """z_f ~ p(z_f), (B, D_f), on the device and in the dtype of `like`."""
        ...

    def sample_dynamic(self, batch: int, steps: int, like: Tensor, static: Tensor | None = None) -> Tensor:
        """z_1:T ~ p(z_1:T), (B, T, D_z), on the device and in the dtype of `like`; a family whose prior
        depends on z_f draws from p(z_1:T | z_f) at `static` (B, D_f), the others ignore it."""
        ...
