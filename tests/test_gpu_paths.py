"""The GPU-only paths, checked as far as a CPU can: the segment boundaries the fused variable-length attention
reads, against the per-segment attention it replaces; the real kernels run where CUDA is."""
import pytest
import torch
import torch.nn.functional as F

from flanlab.models import segattn
from flanlab.models.packed import Tokenized, _flat, collate

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


def _rows():
    ex = lambda n, m: Tokenized(list(range(3, 3 + n)), list(range(40, 40 + m)) + [1])  # noqa: E731
    return [[ex(5, 2), ex(9, 4), ex(3, 1)], [ex(12, 6)], [ex(4, 3), ex(7, 2)]]


def _reference(q, k, v, cu_q, cu_k, causal):
    """What varlen_attn computes: plain attention inside each [cu[i], cu[i+1]) range of the stream."""
    out = []
    for i in range(len(cu_q) - 1):
        qs, ks, vs = (t[a:b].transpose(0, 1) for t, a, b in ((q, cu_q[i], cu_q[i + 1]), (k, cu_k[i], cu_k[i + 1]),
                                                             (v, cu_k[i], cu_k[i + 1])))
        out.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal).transpose(0, 1))
    return torch.cat(out)


class _Attn(torch.nn.Module):
    def __init__(self, is_decoder=False, is_causal=False):
        super().__init__()
        self.is_decoder, self.is_causal = is_decoder, is_causal
        self.training = False


@pytest.mark.parametrize("kind", ["self", "enc", "dec", "cross"])
def test_varlen_segment_boundaries_give_the_per_segment_attention(kind):
    rows = _rows()
    if kind == "self":
        flat, _ = _flat(collate(rows, False), "seg", ("input_ids",))
        layout, module = segattn.layout_for({"seg": flat["seg"]}), _Attn()
    else:
        b = collate(rows, True)
        enc, _ = _flat(b, "enc_seg", ("input_ids",))
        dec, _ = _flat(b, "dec_seg", ("decoder_input_ids",))
        layout = segattn.layout_for({"enc_seg": enc["enc_seg"], "dec_seg": dec["dec_seg"]})
        module = {"enc": _Attn(), "dec": _Attn(True, True), "cross": _Attn(True, False)}[kind]
    p = layout[kind]
    assert p.cu_q is not None and p.cu_q.dtype == torch.int32 and len(p.cu_q) == 7  # six segments
    Tq, Tk = int(p.cu_q[-1]), int(p.cu_k[-1])
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, Tq, 8), torch.randn(1, 4, Tk, 8), torch.randn(1, 4, Tk, 8)
    with segattn.packed_attention(torch.nn.Module(), layout):
        ours, _ = segattn.attention(module, q, k, v, None, scaling=8 ** -0.5)
    ref = _reference(q[0].transpose(0, 1), k[0].transpose(0, 1), v[0].transpose(0, 1), p.cu_q, p.cu_k, p.causal)
    assert p.causal == (kind in ("self", "dec"))
    torch.testing.assert_close(ours[0], ref, atol=1e-5, rtol=1e-5)
    assert not segattn.use_varlen(p, q, None, 0.0)  # CPU tensors keep the bucketed path


@CUDA
def test_llama_loss_with_varlen_attention_matches_dense_masks_on_gpu():
    from flanlab.models.build import ModelSpec, build_model
    from flanlab.models.packed import loss_sum
    model, _ = build_model(ModelSpec(preset="llama-1m"))
    model = model.cuda()
    batch = collate(_rows(), False)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fused, n = loss_sum(model, batch, segment_attention=True)
        dense, m = loss_sum(model, batch, segment_attention=False)
    assert n == m
    torch.testing.assert_close(fused.float(), dense.float(), rtol=2e-2, atol=1e-2)


def test_device_selection_on_a_machine_without_cuda():
    from flanlab.errors import FlanlabError
    from flanlab.models.device import select_device, to_device
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert select_device("auto") == torch.device("cpu") == select_device("cpu")
    with pytest.raises(FlanlabError, match="no CUDA device") as e:
        select_device("cuda")
    assert e.value.field == "device"
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long)}
    assert to_device(batch, torch.device("cpu")) is batch  # no copies on the CPU
