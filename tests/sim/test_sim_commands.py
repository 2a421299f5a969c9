import json

from edgevla.cli import main


def test_sim_bench_json_prints_one_object(capsys):
    # one start per grasp aim error: the README's 40 take 20 s (`edgevla sim bench`)
    assert main(["sim", "bench", "--json", "--steps", "30", "--episodes", "1", "--skip-640",
                 "--tolerance-episodes", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    result = json.loads(out[0])
    assert result["steps_per_s"] > 0
    assert 0.0 <= result["expert_success_rate"] <= 1.0
    tolerance = result["grasp_tolerance"]
    assert "on target" in tolerance and len(tolerance) >= 5
    assert all(0.0 <= v <= 1.0 for v in tolerance.values())


def test_snapshot_writes_pngs(tmp_path, capsys):
    assert (
        main(["sim", "snapshot", "--out", str(tmp_path), "--episode", "--frames", "4", "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    for f in result["files"]:
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_unknown_command_exits_2(capsys):
    assert main(["fly"]) == 2
