"""Every plain mistake a person can make gets one line naming the thing, and its exit code.

Table-driven over every command; each case fails before any work is done. The cases run
in-process (``agent.cli.main``), so an escaping exception fails the test just as a traceback
would reach the user; ``test_cli.py`` runs real processes for the rest.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.cli import build_parser, main
from agent.exit_codes import ExitCode as X

UNREACHABLE = "http://127.0.0.1:1"
ADDRESS = "0x" + "ab" * 20
FILE_IN_THE_WAY = "/proc/version/out"  # a path under a file: no folder can be made there

# (case id, argv, exit code, words the one error line must contain); {name} is a fixture path.
CASES = [
    ("render-width", ["render", "--town", "Town01", "--weather", "ClearNoon", "--width", "0",
                      "--out", "{tmp}/r"], X.USAGE, ["--width", "0 is not between 16 and 4096"]),
    ("render-fov", ["render", "--town", "Town01", "--weather", "ClearNoon", "--fov", "200",
                    "--out", "{tmp}/r"], X.USAGE, ["--fov", "200"]),
    ("render-start", ["render", "--town", "Town01", "--weather", "ClearNoon", "--start", "-3",
                      "--out", "{tmp}/r"], X.USAGE, ["--start", "-3"]),
    ("render-frames", ["render", "--town", "Town01", "--weather", "ClearNoon", "-n", "0",
                       "--out", "{tmp}/r"], X.USAGE, ["--frames", "0"]),
    ("render-seed", ["render", "--town", "Town01", "--weather", "ClearNoon", "--seed", "x",
                     "--out", "{tmp}/r"], X.USAGE, ["--seed", "'x' is not an integer"]),
    ("render-town", ["render", "--town", "Town11", "--weather", "ClearNoon", "--out", "{tmp}/r"],
     X.BAD_VALUE, ["unknown town 'Town11'"]),
    ("render-weather", ["render", "--town", "Town01", "--weather", "Snow", "--out", "{tmp}/r"],
     X.BAD_VALUE, ["unknown weather 'Snow'"]),
    ("render-out-file", ["render", "--town", "Town01", "--weather", "ClearNoon", "--out",
                         "{file}"], X.OUTPUT, ["notes.txt", "is a file"]),
    ("render-out-earlier", ["render", "--town", "Town01", "--weather", "ClearNoon", "--out",
                            "{frames}"], X.OUTPUT, ["earlier render", "--force"]),
    ("render-out-unwritable", ["render", "--town", "Town01", "--weather", "ClearNoon", "--out",
                               FILE_IN_THE_WAY], X.OUTPUT, [FILE_IN_THE_WAY, "cannot write"]),
    ("render-missing", ["render", "--town", "Town01"], X.USAGE, ["required", "--weather"]),
    ("scenario-missing", ["scenario", "{tmp}/none.toml", "--out", "{tmp}/o"], X.CONFIG,
     ["none.toml", "no such file"]),
    ("scenario-not-one", ["scenario", "{file}", "--check"], X.CONFIG, ["notes.txt"]),
    ("byzantine-config", ["byzantine"], X.USAGE, ["required", "--config"]),
    ("byzantine-attack", ["byzantine", "--config", "{file}", "--attack", "alie"], X.USAGE,
     ["--attack", "alie"]),
    ("sim-frames", ["sim", "--frames", "1"], X.USAGE, ["--frames", "1 is not between 2"]),
    ("sim-krum-byzantine", ["sim", "--vehicles", "4", "--rule", "krum", "--byzantine", "5",
                            "--no-compression"], X.USAGE, ["--rule krum", "more than 7"]),
    ("sim-byzantine-negative", ["sim", "--byzantine", "-2"], X.USAGE, ["--byzantine", "-2"]),
    ("sim-round-timeout", ["sim", "--round-timeout", "-1"], X.USAGE, ["--round-timeout", "-1"]),
    ("sim-round-timeout-nan", ["sim", "--round-timeout", "nan"], X.USAGE, ["--round-timeout"]),
    ("sim-vehicles", ["sim", "--vehicles", "1"], X.USAGE, ["--vehicles", "1"]),
    ("sim-density-zero", ["sim", "--density", "0"], X.USAGE, ["--density", "0"]),
    ("sim-density-big", ["sim", "--density", "1.5"], X.USAGE, ["--density", "1.5"]),
    ("sim-bits", ["sim", "--bits", "5"], X.USAGE, ["--bits", "invalid choice"]),
    ("sim-rule", ["sim", "--rule", "average"], X.USAGE, ["--rule", "invalid choice"]),
    ("sim-attackers-libp2p", ["sim", "--attackers", "1"], X.USAGE, ["--transport memory only"]),
    ("sim-attackers-all", ["sim", "--transport", "memory", "--vehicles", "2", "--attackers", "2"],
     X.USAGE, ["--attackers 2"]),
    ("sim-min-peers", ["sim", "--vehicles", "3", "--min-peers", "4"], X.USAGE, ["--min-peers 4"]),
    ("sim-median-sparse", ["sim", "--rule", "median"], X.USAGE, ["dense contributions"]),
    ("sim-out-file", ["sim", "--out", "{file}"], X.OUTPUT, ["notes.txt", "is a file"]),
    ("sim-out-unwritable", ["sim", "--out", FILE_IN_THE_WAY], X.OUTPUT, ["cannot write"]),
    ("sim-threads", ["sim", "--threads", "0"], X.USAGE, ["--threads", "0"]),
    ("train-eval-frames", ["train", "--eval-frames", "-1", "--out", "{tmp}/m.pt"], X.USAGE,
     ["--eval-frames", "-1"]),
    ("train-steps", ["train", "--steps", "0", "--out", "{tmp}/m.pt"], X.USAGE, ["--steps", "0"]),
    ("train-batch", ["train", "--batch-size", "0", "--out", "{tmp}/m.pt"], X.USAGE,
     ["--batch-size"]),
    ("train-out-dir", ["train", "--out", "{tmp}"], X.OUTPUT, ["is a folder"]),
    ("train-out-unwritable", ["train", "--out", FILE_IN_THE_WAY + "/m.pt"], X.OUTPUT,
     ["cannot write"]),
    ("train-out-missing", ["train"], X.USAGE, ["required", "--out"]),
    ("train-empty-folder", ["train", "--source", "{empty}", "--out", "{tmp}/m.pt"], X.CAMERA,
     ["contains no images"]),
    ("train-missing-folder", ["train", "--source", "{tmp}/nowhere", "--out", "{tmp}/m.pt"],
     X.CAMERA, ["nowhere", "does not exist"]),
    ("train-device", ["train", "--source", "video:97", "--out", "{tmp}/m.pt"], X.CAMERA,
     ["video device 97", "cannot open"]),
    ("train-video-file", ["train", "--source", "video:{tmp}/none.mp4", "--out", "{tmp}/m.pt"],
     X.CAMERA, ["none.mp4", "no such file"]),
    ("train-sim-spec", ["train", "--source", "sim:Town01", "--out", "{tmp}/m.pt"], X.CAMERA,
     ["expected sim:TOWN/WEATHER"]),
    ("train-sim-option", ["train", "--source", "sim:Town01/ClearNoon?speed=3", "--out",
                          "{tmp}/m.pt"], X.CAMERA, ["unknown option 'speed'"]),
    ("train-sim-n", ["train", "--source", "sim:Town01/ClearNoon?n=0", "--out", "{tmp}/m.pt"],
     X.CAMERA, ["n=0"]),
    ("train-sim-weather", ["train", "--source", "sim:Town01/Snow", "--out", "{tmp}/m.pt"],
     X.BAD_VALUE, ["unknown weather 'Snow'"]),
    ("train-scheme", ["train", "--source", "carla:Town01", "--out", "{tmp}/m.pt"], X.CAMERA,
     ["no installed package provides the carla: scheme"]),
    ("train-source-and-town", ["train", "--source", "{frames}", "--town", "Town01", "--out",
                               "{tmp}/m.pt"], X.USAGE, ["--town/--weather"]),
    ("train-weather", ["train", "--weather", "Drizzle", "--out", "{tmp}/m.pt"], X.BAD_VALUE,
     ["unknown weather 'Drizzle'"]),
    ("export-text-h", ["export", "{htext}", "--out", "{tmp}/m.onnx"], X.MODEL_FILE,
     ["hello.pt", "not a torch checkpoint"]),
    ("export-text", ["export", "{file}", "--out", "{tmp}/m.onnx"], X.MODEL_FILE,
     ["not a torch checkpoint"]),
    ("export-onnx-as-checkpoint", ["export", "{onnx}", "--out", "{tmp}/m.onnx"], X.MODEL_FILE,
     ["not a torch checkpoint"]),
    ("export-missing", ["export", "{tmp}/none.pt", "--out", "{tmp}/m.onnx"], X.MODEL_FILE,
     ["none.pt", "no such file"]),
    ("export-out-dir", ["export", "{ckpt}", "--out", "{tmp}"], X.OUTPUT, ["is a folder"]),
    ("export-calibration-frames", ["export", "{ckpt}", "--calibration-frames", "0", "--out",
                                   "{tmp}/m.onnx"], X.USAGE, ["--calibration-frames"]),
    ("export-calibration-empty", ["export", "{ckpt}", "--calibration", "{empty}", "--out",
                                  "{tmp}/m.onnx"], X.CAMERA, ["contains no images"]),
    ("infer-model-missing", ["infer", "--model", "{tmp}/none.onnx", "{frames}"], X.MODEL_FILE,
     ["none.onnx", "no such file"]),
    ("infer-model-checkpoint", ["infer", "--model", "{ckpt}", "{frames}"], X.MODEL_FILE,
     ["not an ONNX model"]),
    ("infer-model-other-graph", ["infer", "--model", "{other_graph}", "{frames}"], X.MODEL_FILE,
     ["other.onnx", "expects inputs"]),
    ("infer-model-width", ["infer", "--model", "{wrong_width}", "{frames}"], X.MODEL_FILE,
     ["wide.onnx", "metadata lists 5 classes"]),
    ("infer-model-no-metadata", ["infer", "--model", "{bare}", "{frames}"], X.MODEL_FILE,
     ["bare.onnx", "no swarmdrive metadata"]),
    ("infer-threads", ["infer", "--model", "{onnx}", "--threads", "0", "{frames}"], X.USAGE,
     ["--threads"]),
    ("infer-draw-file", ["infer", "--model", "{onnx}", "--draw", "{file}", "{frames}"],
     X.OUTPUT, ["--draw", "notes.txt", "is a file"]),
    ("infer-min-score", ["infer", "--model", "{onnx}", "--min-score", "2", "{frames}"], X.USAGE,
     ["--min-score", "2"]),
    ("infer-corrupt", ["infer", "--model", "{onnx}", "{corrupt}"], X.BAD_INPUT_FILE,
     ["bad.png", "not a readable image"]),
    ("infer-missing", ["infer", "--model", "{onnx}", "{tmp}/gone.png"], X.BAD_INPUT_FILE,
     ["gone.png", "cannot read"]),
    ("infer-no-paths", ["infer", "--model", "{onnx}"], X.USAGE, ["PATH"]),
    ("release-no-action", ["release"], X.USAGE, ["ACTION"]),
    ("release-no-source", ["release", "publish", "--round", "0", "--out", "{tmp}/r.onnx"],
     X.USAGE, ["one of the arguments --onnx --checkpoint is required"]),
    ("release-missing-onnx", ["release", "publish", "--round", "0", "--onnx", "{tmp}/gone.onnx",
                              "--out", "{tmp}/r.onnx"], X.USAGE, ["gone.onnx", "no such file"]),
    ("release-bad-uri", ["release", "publish", "--round", "0", "--onnx", "{onnx}", "--out",
                         "{tmp}/r.onnx", "--uri", "ftp://mirror/x.onnx"], X.USAGE,
     ["--uri", "not an http(s)"]),
    ("release-out-dir", ["release", "publish", "--round", "0", "--onnx", "{onnx}", "--out",
                         "{tmp}"], X.OUTPUT, ["is a folder"]),
    ("release-list-unreachable", ["release", "list", "--rpc", UNREACHABLE, "--contract",
                                  ADDRESS], X.CHAIN_UNREACHABLE, ["unreachable"]),
    ("chain-no-action", ["chain"], X.USAGE, ["ACTION"]),
    ("chain-bad-action", ["chain", "mint"], X.USAGE, ["invalid choice: 'mint'"]),
    ("chain-no-rpc", ["chain", "status"], X.USAGE, ["--rpc URL"]),
    ("chain-no-contract", ["chain", "status", "--rpc", UNREACHABLE], X.USAGE,
     ["--contract ADDRESS"]),
    ("chain-rpc-ftp", ["chain", "status", "--rpc", "ftp://127.0.0.1:8545", "--contract",
                       ADDRESS], X.USAGE, ["ftp://", "not an http(s)"]),
    ("chain-rpc-ws", ["chain", "status", "--rpc", "ws://127.0.0.1:8545", "--contract", ADDRESS],
     X.USAGE, ["ws://", "not an http(s)"]),
    ("chain-rpc-no-scheme", ["chain", "status", "--rpc", "127.0.0.1:8545", "--contract",
                             ADDRESS], X.USAGE, ["not an http(s)"]),
    ("chain-rpc-port", ["chain", "status", "--rpc", "http://127.0.0.1:99999", "--contract",
                        ADDRESS], X.USAGE, ["malformed port"]),
    ("chain-contract-bad", ["chain", "status", "--rpc", UNREACHABLE, "--contract", "0x12"],
     X.USAGE, ["'0x12' is not an address"]),
    ("chain-unreachable", ["chain", "status", "--rpc", UNREACHABLE, "--contract", ADDRESS],
     X.CHAIN_UNREACHABLE, ["unreachable"]),
    ("chain-min-peers-zero", ["chain", "deploy", "--rpc", UNREACHABLE, "--min-peers", "0"],
     X.USAGE, ["--min-peers", "0"]),
    ("chain-min-peers-negative", ["chain", "deploy", "--rpc", UNREACHABLE, "--min-peers", "-3"],
     X.USAGE, ["--min-peers", "-3"]),
    ("chain-min-peers-big", ["chain", "deploy", "--rpc", UNREACHABLE, "--min-peers", "65"],
     X.USAGE, ["--min-peers", "65"]),
    ("chain-genesis", ["chain", "deploy", "--rpc", UNREACHABLE, "--keystore", "{key}",
                       "--genesis", "xyz"], X.USAGE, ["--genesis", "32 bytes"]),
    ("chain-genesis-zero", ["chain", "deploy", "--rpc", UNREACHABLE, "--keystore", "{key}",
                            "--genesis", "00" * 32], X.USAGE, ["--genesis", "zero"]),
    ("chain-no-genesis", ["chain", "deploy", "--rpc", UNREACHABLE, "--keystore", "{key}"],
     X.USAGE, ["--genesis factory|HEX|FILE"]),
    ("chain-genesis-missing", ["chain", "deploy", "--rpc", UNREACHABLE, "--keystore", "{key}",
                               "--genesis", "{tmp}/none.pt"], X.USAGE,
     ["none.pt", "no such checkpoint file"]),
    ("chain-quorum-zero", ["chain", "params", "--quorum", "0"], X.USAGE, ["--quorum", "0"]),
    ("chain-params-timeout", ["chain", "params", "--round-timeout", "0"], X.USAGE,
     ["--round-timeout", "0"]),
    ("chain-observe-address", ["chain", "observe", "0xnope", "--rpc", UNREACHABLE,
                               "--contract", ADDRESS], X.USAGE, ["'0xnope' is not an address"]),
    ("chain-propose-address", ["chain", "propose-operator", "0x12", "--rpc", UNREACHABLE,
                               "--contract", ADDRESS], X.USAGE, ["'0x12' is not an address"]),
    ("chain-accept-no-key", ["chain", "accept-operator", "--rpc", UNREACHABLE, "--contract",
                             ADDRESS], X.USAGE, ["--keystore FILE"]),
    ("chain-no-keystore", ["chain", "deploy", "--rpc", UNREACHABLE], X.USAGE, ["--keystore FILE"]),
    ("chain-key-missing", ["chain", "deploy", "--rpc", UNREACHABLE, "--keystore",
                           "{tmp}/none.key"], X.KEY_FILE, ["none.key", "no such file"]),
    ("chain-key-loose", ["chain", "deploy", "--rpc", UNREACHABLE, "--keystore", "{loose_key}"],
     X.KEY_FILE, ["loose.key", "chmod 600"]),
    ("chain-key-junk", ["chain", "deploy", "--rpc", UNREACHABLE, "--keystore", "{junk_key}"],
     X.KEY_FILE, ["junk.key", "not a private key"]),
    ("chain-key-dir", ["chain", "deploy", "--rpc", UNREACHABLE, "--keystore", "{tmp}"],
     X.KEY_FILE, ["is a directory"]),
    ("chain-key-foreign-link", ["chain", "deploy", "--rpc", UNREACHABLE, "--keystore",
                                "{foreign_link}"], X.KEY_FILE, ["symlink owned by uid 4321"]),
    ("chain-key-foreign-owner", ["chain", "deploy", "--rpc", UNREACHABLE, "--keystore",
                                 "{foreign_key}"], X.KEY_FILE, ["owned by uid 4321"]),
    ("chain-password-missing", ["chain", "deploy", "--rpc", UNREACHABLE, "--keystore", "{key}",
                                "--password-file", "{tmp}/none.txt"], X.KEY_FILE,
     ["password file", "none.txt", "no such file"]),
    ("chain-keystore-needs-password", ["chain", "deploy", "--rpc", UNREACHABLE, "--keystore",
                                       "{encrypted_key}"], X.KEY_FILE, ["needs a password"]),
    ("chain-keygen-exists", ["chain", "keygen", "--keystore", "{key}"], X.KEY_FILE,
     ["already exists"]),
    ("chain-keygen-no-folder", ["chain", "keygen", "--keystore", "{tmp}/no/such/k.key"],
     X.KEY_FILE, ["does not exist", "create it"]),
    ("chain-register-address", ["chain", "register", "0xnope", "--rpc", UNREACHABLE,
                                "--contract", ADDRESS, "--keystore", "{key}"], X.USAGE,
     ["'0xnope' is not an address"]),
    ("chain-fund-address", ["chain", "fund", "nope", "--rpc", UNREACHABLE], X.USAGE,
     ["'nope' is not an address"]),
    ("chain-rounds-from-block", ["chain", "rounds", "--from-block", "-1", "--rpc", UNREACHABLE,
                                 "--contract", ADDRESS], X.USAGE, ["--from-block"]),
    ("unknown-command", ["fly"], X.USAGE, ["invalid choice: 'fly'"]),
    ("misspelt-flag", ["infer", "--modle", "x", "y"], X.USAGE, ["required: --model"]),
    ("unknown-flag", ["infer", "--model", "x", "--frobnicate", "y"], X.USAGE,
     ["unrecognized arguments: --frobnicate"]),
    ("serve-no-config", ["serve", "--config", "{tmp}/none.toml"], X.CONFIG,
     ["none.toml", "no such file"]),
    ("learn-no-config", ["learn", "--config", "{tmp}/none.toml"], X.CONFIG,
     ["none.toml", "no such file"]),
    ("config-check-missing", ["config", "check", "{tmp}"], X.CONFIG, ["is a directory"]),
    ("sim-processes-memory", ["sim", "--processes", "--transport", "memory"], X.USAGE,
     ["--processes runs the libp2p transport"]),
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory, trained) -> dict[str, Path]:
    """The files the cases name: good ones, broken ones, foreign ones."""
    import cv2

    d = tmp_path_factory.mktemp("cli-errors")
    frames = d / "frames"
    assert main(["render", "--town", "Town03", "--weather", "ClearSunset", "-n", "3",
                 "--out", str(frames)]) == 0
    (d / "empty").mkdir()
    (d / "notes.txt").write_text("hello\n")
    (d / "hello.pt").write_text("hello, I am text that starts with an h\n")
    (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    cv2.imwrite(str(d / "crop.png"), trained.data.images[0])
    key, loose, junk = d / "op.key", d / "loose.key", d / "junk.key"
    key.write_text("0x" + "11" * 32)
    loose.write_text("0x" + "11" * 32)
    junk.write_text("not a key")
    key.chmod(0o600)
    loose.chmod(0o644)
    junk.chmod(0o600)
    encrypted = d / "enc.key"
    encrypted.write_text('{"crypto": {}, "version": 3}')
    encrypted.chmod(0o600)
    foreign_key = d / "foreign.key"
    foreign_key.write_text("0x" + "22" * 32)
    foreign_key.chmod(0o600)
    os.chown(foreign_key, 4321, 4321)  # the suite runs as root in CI, as the machines do
    foreign_link = d / "link.key"
    foreign_link.symlink_to(key)
    os.lchown(foreign_link, 4321, 4321)
    proto = onnx.load(str(trained.onnx))
    meta = list(proto.metadata_props)
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    other = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "other", [x], [y]))
    other.metadata_props.extend(meta)
    onnx.save(other, str(d / "other.onnx"))
    wide = onnx.load(str(trained.onnx))
    for p in wide.metadata_props:
        if p.key == "swarmdrive.classes":
            p.value = '["a", "b", "c", "d", "e"]'
    onnx.save(wide, str(d / "wide.onnx"))
    bare = onnx.load(str(trained.onnx))
    del bare.metadata_props[:]
    onnx.save(bare, str(d / "bare.onnx"))
    return {"tmp": d, "frames": frames, "empty": d / "empty", "file": d / "notes.txt",
            "htext": d / "hello.pt", "corrupt": d / "bad.png", "key": key, "loose_key": loose,
            "junk_key": junk, "encrypted_key": encrypted, "foreign_key": foreign_key,
            "foreign_link": foreign_link, "ckpt": trained.checkpoint, "onnx": trained.onnx,
            "other_graph": d / "other.onnx", "wrong_width": d / "wide.onnx",
            "bare": d / "bare.onnx"}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = int(e.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("argv", "code", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_its_exit_code(argv, code, words, paths, capsys,
                                                   monkeypatch):
    monkeypatch.delenv("SWARMDRIVE_RPC", raising=False)
    monkeypatch.delenv("SWARMDRIVE_CONTRACT", raising=False)
    monkeypatch.delenv("SWARMDRIVE_KEY_PASSWORD", raising=False)
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    got, err = run_cli(argv, capsys)
    assert got == code, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("swarmdrive: error:")]
    assert len(errors) == 1, err
    for w in words:
        assert w.format(**{k: str(v) for k, v in paths.items()}) in errors[0], errors[0]


def test_the_table_covers_every_command():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    covered = {argv[0] for _, argv, _, _ in CASES}
    assert set(sub.choices) <= covered  # type: ignore[attr-defined]


TOKENS = ["sim", "render", "train", "export", "infer", "chain", "status", "deploy", "keygen",
          "--out", "--town", "--weather", "--frames", "-n", "--width", "--fov", "--rule",
          "--vehicles", "--density", "--bits", "--rpc", "--contract", "--min-peers", "--model",
          "--source", "--threads", "--seed", "-v", "--help", "--version", "0", "-1", "1e999",
          "nan", "Town01", "ClearNoon", "krum", "x", "", "--", "=", "sim:Town01/ClearNoon",
          "http://127.0.0.1:1", "0x" + "00" * 20, "\x00", "é"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=12)), max_size=8))
def test_random_argument_vectors_never_raise_from_the_parser(argv):
    parser = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as e:
        assert e.code in (0, X.USAGE, None), (argv, e.code)
