"""The vehicle config: every problem named by its key path, from ``config check`` and from the
daemons alike, against real files, folders and a real chain (anvil)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from agent.config.schema import ConfigError, load
from chain.keys import new_key_file
from chain.launch import Anvil, fund
from chain.ledger import deploy
from models.codec import FLEET_CODEC, CodecConfig
from tests.agent.daemons import WAIT_S, write_config


def swarmdrive(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *map(str, args)], capture_output=True,
                          text=True, timeout=WAIT_S)


@pytest.fixture(scope="module")
def fleet_chain(anvil: Anvil) -> tuple[str, str]:
    """(rpc_url, contract) of a SwarmLedger on a real anvil."""
    w3 = anvil.web3()
    operator = Account.create()
    fund(w3, operator.address)
    return anvil.url, deploy(w3, operator, bytes.fromhex("11" * 32))


def chain_section(url: str, contract: str) -> str:
    return f'rpc_url = "{url}"\ncontract = "{contract}"'


def test_every_schema_problem_is_named_by_its_key_path(tmp_path):
    cfg = write_config(tmp_path, vehicle='key_file = "k"\nstate_dir = 3\nbogus = 1',
                       p2p='listen = "tcp"', buffer="held_out = 1.5",
                       training='model = "yolo"\nprecision = "fp16"\ncodec_density = 0\n'
                                'codec_bits = 6',
                       chain='rpc_url = "ftp://x"\ncontract = "0x12"')
    with pytest.raises(ConfigError) as e:
        load(cfg)
    assert [p.split(":")[0] for p in e.value.problems] == [
        "vehicle.state_dir", "vehicle.bogus", "buffer.held_out", "training.model",
        "training.precision", "training.codec_density", "training.codec_bits", "p2p.listen",
        "chain.rpc_url", "chain.contract"]
    assert "vehicle.bogus: unknown key" in e.value.problems
    assert any("'detector' or 'classifier'" in p for p in e.value.problems)


def test_what_a_left_out_key_means_follows_the_model_learnt(tmp_path):
    detector = load(write_config(tmp_path, training='model = "detector"'))
    assert (detector.training.steps_batch(), detector.training.peak_lr(),
            detector.buffer_samples()) == (16, 4e-3, 500)
    classifier = load(write_config(tmp_path, training='model = "classifier"\nbatch_size = 8',
                                   buffer="max_samples = 50"))
    assert (classifier.training.steps_batch(), classifier.training.peak_lr(),
            classifier.buffer_samples()) == (8, 3e-3, 50)


def test_a_vehicle_sends_the_fleet_codec_by_default(tmp_path):
    # The schema keeps literals (the config loads without numpy); they must be the fleet's.
    training = load(write_config(tmp_path)).training
    assert CodecConfig(training.codec_density, training.codec_bits) == FLEET_CODEC


def test_fleet_momentum_needs_dense_deltas_and_lookahead_a_finite_count(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(write_config(tmp_path, training="fleet_momentum = true\nlookahead = inf"))
    assert [p.split(":")[0] for p in e.value.problems] == ["training.lookahead",
                                                          "training.fleet_momentum"]
    assert "sends 10% of each" in e.value.problems[1]
    dense = load(write_config(tmp_path, training="fleet_momentum = true\ncodec_density = 1.0"
                                                 "\ncodec_bits = 32\nlookahead = 10"))
    assert (dense.training.fleet_momentum, dense.training.lookahead) == (True, 10.0)


def test_a_missing_section_and_bad_toml_are_named(tmp_path):
    (tmp_path / "a.toml").write_text("[vehicle]\nkey_file = 'k'\nstate_dir = 's'\n")
    with pytest.raises(ConfigError, match=r"chain: missing.*serve: missing"):
        load(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text("[vehicle\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(tmp_path / "b.toml")


def test_the_example_passes_the_check_once_its_key_and_chain_exist(tmp_path, fleet_chain):
    out = swarmdrive("config", "example")
    assert out.returncode == 0
    text = out.stdout.replace('rpc_url = "http://127.0.0.1:8545"', f'rpc_url = "{fleet_chain[0]}"')
    text = text.replace("0x5FbDB2315678afecb367f032d93F642f64180aa3", fleet_chain[1])
    (tmp_path / "vehicle.toml").write_text(text)
    (tmp_path / "labels" / "front").mkdir(parents=True)
    new_key_file(tmp_path / "vehicle.key")
    out = swarmdrive("config", "check", tmp_path / "vehicle.toml")
    assert (out.returncode, out.stderr) == (0, "")
    assert "ok" in out.stdout


def bad_configs(tmp_path: Path, url: str, contract: str) -> dict[str, tuple[Path, str]]:
    """Each bad config the issue lists, and the words its one error line must hold."""
    good_chain = chain_section(url, contract)
    cases: dict[str, tuple[dict[str, str], str]] = {
        "unknown key": ({"training": "epochs = 3"}, "training.epochs: unknown key"),
        "wrong type": ({"training": 'local_steps = "many"'},
                       "training.local_steps: Input should be a valid integer"),
        "missing key file": ({"vehicle": 'key_file = "none.key"\nstate_dir = "state"'},
                             "vehicle.key_file: key file"),
        "key file mode 0644": ({"vehicle": 'key_file = "open.key"\nstate_dir = "state"'},
                               "mode 0644 lets others read it"),
        "no chain polling": ({"chain": good_chain + "\npoll_s = 0"},
                             "chain.poll_s: Input should be greater than 0"),
        "unreachable RPC": ({"chain": chain_section("http://127.0.0.1:9", contract)
                             + "\nstart_wait_s = 0"},
                            "chain.rpc_url: http://127.0.0.1:9 does not answer"),
        "unwritable state dir": ({"vehicle": 'key_file = "vehicle.key"\n'
                                             'state_dir = "/proc/swarmdrive"'},
                                 "vehicle.state_dir: /proc/swarmdrive is not a folder"),
    }
    out = {}
    for i, (name, (sections, words)) in enumerate(cases.items()):
        d = tmp_path / f"case{i}"
        d.mkdir()
        new_key_file(d / "vehicle.key")
        new_key_file(d / "open.key")
        (d / "open.key").chmod(0o644)
        out[name] = (write_config(d, **({"chain": good_chain} | sections)), words)
    return out


def test_bad_configs_give_one_line_and_the_config_code_from_check_and_learn(tmp_path,
                                                                             fleet_chain):
    cases = bad_configs(tmp_path, *fleet_chain)
    for name, (cfg, words) in cases.items():
        for command in (("config", "check"), ("learn", "--config")):
            out = swarmdrive(*command, cfg)
            lines = out.stderr.strip().splitlines()
            assert out.returncode == 14, (name, command, out.stderr)
            assert len(lines) == 1 and words in lines[0], (name, command, lines)
            assert "Traceback" not in out.stderr


def test_the_learner_waits_for_an_rpc_node_that_is_away_then_calls_the_config_wrong(
        tmp_path, fleet_chain):
    new_key_file(tmp_path / "vehicle.key")
    cfg = write_config(tmp_path, chain=chain_section("http://127.0.0.1:9", fleet_chain[1])
                       + "\nstart_wait_s = 2.5")
    out = swarmdrive("learn", "--config", cfg)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 14 and "Traceback" not in out.stderr
    assert "chain.rpc_url: http://127.0.0.1:9 does not answer" in lines[-1]
    waits = [line for line in lines if "chain_unreachable" in line]
    assert len(waits) == 2  # asked at 0, 1 and 2.5 s: the last at the end of the wait
