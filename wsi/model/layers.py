"""The NCRF conditional random field layer."""

import torch
from torch import nn


class CRF(nn.Module):
    """Fully connected CRF over the patches of a grid, solved by mean-field inference (Li & Ping, 2018).

    Parameters
    ----------
    num_nodes : int
        Patches per grid, N (9 for a 3×3 grid).
    iteration : int
        Synchronous mean-field updates (10 in the paper).

    The only parameter is ``W`` ``[1, N, N]``, initialised to zeros so that the CRF starts as the identity
    (NCRF starts as the baseline). With ``W_sym = (W + Wᵀ) / 2``, the pairwise potential between patches i and j
    is ``P_ij = cos(f_i, f_j) · W_sym_ij`` (the diagonal included), and each update is
    ``z_i ← u_i + Σ_j P_ij (2σ(z_j) − 1)`` with the unary ``u`` the input logits.
    """

    def __init__(self, num_nodes, iteration=10):
        super().__init__()
        self.num_nodes = num_nodes
        self.iteration = iteration
        self.W = nn.Parameter(torch.zeros(1, num_nodes, num_nodes))

    def forward(self, feats, logits):
        """Refine logits with the CRF.

        Parameters
        ----------
        feats : Tensor ``[B, N, D]``
            Patch embeddings.
        logits : Tensor ``[B, N]`` or ``[B, N, 1]``
            Unary logits.

        Returns the refined logits with the shape of ``logits``.
        """
        shape, dtype = logits.shape, logits.dtype
        # Float32 inside: bfloat16 cosine similarities and sums of 9 terms lose too much precision. Autocast is
        # switched off here, or it would run the float32 matmul below in bfloat16/float16 again.
        with torch.autocast(feats.device.type, enabled=False):
            z = self._mean_field(feats.float(), logits.float())
        return z.reshape(shape).to(dtype)

    def _mean_field(self, feats, logits):
        """Float32 mean-field inference: ``feats`` ``[B, N, D]``, ``logits`` with B·N elements → ``[B, N, 1]``."""
        unary = logits.reshape(feats.shape[0], self.num_nodes, 1)
        norms = feats.norm(dim=2, keepdim=True)
        # An all-zero embedding (possible after ReLU + pooling) has no direction: its similarity is 0, not NaN.
        similarity = feats @ feats.transpose(1, 2) / (norms @ norms.transpose(1, 2)).clamp_min(1e-12)
        w_sym = (self.W + self.W.transpose(1, 2)) / 2
        pairwise = similarity * w_sym.float()
        z = unary
        for _ in range(self.iteration):
            marginals = torch.sigmoid(z).transpose(1, 2)  # [B, 1, N]: p_j along the last axis
            z = unary + (pairwise * (2 * marginals - 1)).sum(dim=2, keepdim=True)
        return z

    def extra_repr(self):
        return f"num_nodes={self.num_nodes}, iteration={self.iteration}"
