"""`avedge train`: options generated from each trainer's TrainConfig (avedge/cli/train_cmd.py)."""

import dataclasses

import pytest
from avedge.models.registry import trainers
from avedge.models.speech_extractor import train as tr
from avedge.models.speech_extractor import train_npu as tn
from avedge.runtime.errors import AvedgeError

from avedge.cli import train_cmd


def _cfg(config, *argv):
    opts, rest = train_cmd.options_parser("t", config).parse_known_args(list(argv))
    assert not rest
    return train_cmd.config_from(opts, config)


def test_trainers_come_from_the_family_specs():
    from avedge.models.lipreader import train as lt
    from avedge.models.lipsync import train as ls

    assert trainers() == {"speech-extractor": tr.__name__, "speech-extractor-npu": tn.__name__,
                          "lipreader": lt.__name__, "lips-pose": ls.__name__}


def test_every_field_is_an_option_typed_and_explained_by_its_comment():
    parser = train_cmd.options_parser("speech-extractor", tr.TrainConfig)
    flags = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    for f in dataclasses.fields(tr.TrainConfig):
        assert train_cmd.flag_of(f.name) in flags
    assert "mixtures per step" in flags["--batch"].help
    assert "exponential moving average" in flags["--ema"].help  # the comment block above
    cfg = _cfg(tr.TrainConfig, "--steps", "12", "--lr", "2e-4", "--holdout-synth", "none",
               "--minutes", "1.5", "--dims", '{"df_order": 1}', "--corpus", "bank")
    assert (cfg.steps, cfg.lr, cfg.holdout_synth, cfg.minutes) == (12, 2e-4, None, 1.5)
    assert cfg.dims == {**tr.TrainConfig().dims, "df_order": 1}
    assert _cfg(tn.TrainConfig, "--mlp-width", "64", "--corpus", "b").mlp_width == 64


def test_bad_values_are_one_clear_line():
    with pytest.raises(AvedgeError, match="--steps wants int; got 'many'"):
        _cfg(tr.TrainConfig, "--steps", "many")
    with pytest.raises(AvedgeError, match=r"--dims: unknown dimension\(s\) x; accepted"):
        _cfg(tr.TrainConfig, "--dims", '{"x": 1}')


def test_an_option_of_another_trainer_or_none_is_refused_naming_it(capsys):
    from avedge.cli import main

    for argv, flag in ((["speech-extractor-npu", "--ema", "0.9"], "--ema"),
                       (["speech-extractor", "--stpes=3"], "--stpes")):
        assert main(["train", *argv]) == 2
        assert f"{flag} does not apply to training {argv[0]!r}" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert ("available: lipreader, lips-pose, speech-extractor, speech-extractor-npu"
            in capsys.readouterr().err)
