"""Training batches drawn ahead: in a thread or in worker processes, the same batches."""

import functools
from dataclasses import asdict, replace

import pytest
import torch
from avedge.models.common.batch_loader import BatchLoader
from avedge.models.speech_extractor import model as se
from avedge.models.speech_extractor import train as tr
from avedge.runtime.errors import AvedgeError
from tone_voices import ToneVoices

TINY = se.Dims(d_model=16, d_hidden=32, n_blocks=2, dilation_cycle=2, df_order=2,
               speaker=se.SpeakerDims(channels=16, emb_dim=8, layers=1))


def _cfg(tmp_path, name, **kw):
    return tr.TrainConfig(corpus="unused", out=str(tmp_path / name), batch=3, seconds=1.0,
                          lr=3e-3, warmup=2, eval_every=100, eval_n=4, threads=1,
                          dims=asdict(TINY), holdout_synth=None, **kw)


def test_worker_processes_draw_the_batches_a_thread_draws_in_order(tmp_path):
    cfg, data = _cfg(tmp_path, "w.safetensors"), ToneVoices()
    make = functools.partial(tr.batch_for_step, cfg)
    got = {}
    for workers in (1, 3):
        loader = BatchLoader(make, data, first_step=5, workers=workers)
        got[workers] = [loader.next() for _ in range(4)]
        loader.close()
    for a, b in zip(got[1], got[3]):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    assert not torch.equal(got[1][0][0], got[1][1][0])  # step 5 and step 6 differ
    with pytest.raises(AvedgeError, match="workers must be >= 1"):
        BatchLoader(make, data, 0, workers=0)


def test_training_with_workers_gives_the_weights_of_training_without(tmp_path):
    data = ToneVoices()
    runs = {}
    for workers in (1, 2):
        cfg = _cfg(tmp_path, f"w{workers}.safetensors", steps=3, workers=workers)
        tr.train(cfg, data=data, progress=False, log=lambda *a: None)
        runs[workers] = se.load_weights(cfg.out).state_dict()
    for k, v in runs[1].items():
        assert torch.equal(v, runs[2][k]), k
    resumed = tr.train(replace(cfg, steps=4), data=data, progress=False, log=lambda *a: None)
    assert resumed["steps"] == 4  # resumes with its workers
