"""Build a small store with the code as of be81100 (before the restructuring of issue 18); its tarball
is the fixture of tests/test_legacy_store.py. Run at that commit: `python tests/data/make_legacy_store.py OUT`."""

import shutil, sys
from pathlib import Path
import numpy as np, soundfile as sf

from pipelines.demo import DemoConfig, generate_demo_corpus
from pipelines.mixing import PairConfig
from pipelines.testing import ingest_in_process, pairs_in_process, features_in_process
from features import feature_config
from stores import open_store

out = Path(sys.argv[1])
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)
work = Path("/tmp/legacy/work")
shutil.rmtree(work, ignore_errors=True)
corpus = generate_demo_corpus(
    work / "demo",
    DemoConfig(
        speakers=3,
        utterances_per_speaker=1,
        min_seconds=0.5,
        max_seconds=0.6,
        noises=1,
        rirs=1,
        noise_seconds=1.0,
        seed=3,
    ),
)
store = open_store(out / "store")
ingest_in_process(store, "librispeech", corpus.speech, name="demo")
# a VoiceBank-DEMAND-style corpus (given pairs) from generated audio
vb = work / "vb"
for split in ("clean_testset_wav", "noisy_testset_wav"):
    (vb / split).mkdir(parents=True)
rng = np.random.default_rng(0)
for k, path in enumerate(sorted(Path(corpus.speech).rglob("*.flac"))[:2]):
    y, sr = sf.read(path, dtype="float32")
    name = f"p9{k}_00{k}.wav"
    sf.write(vb / "clean_testset_wav" / name, y, sr, subtype="PCM_16")
    sf.write(
        vb / "noisy_testset_wav" / name,
        y + 0.01 * rng.standard_normal(len(y)).astype("float32"),
        sr,
        subtype="PCM_16",
    )
ingest_in_process(store, "voicebank-demand", vb, name="vb")
pairs_in_process(
    store,
    "noisy",
    PairConfig(corpus="demo", kind="noisy", noise="x", snr=(0.0, 10.0), seed=1),
    noise_folder=corpus.noise,
)
ids = {
    "magnitude": features_in_process(store, "noisy", feature_config("magnitude")),
    "complex": features_in_process(
        store, "noisy", feature_config("complex", n_fft=128, hop_length=64, win_length=128)
    ),
}
ids["decomposed"] = features_in_process(store, "noisy", feature_config("decomposed", n=4))
ids["given-magnitude"] = features_in_process(store, "vb-given", feature_config("magnitude"))
from training.trainer import TrainConfig, train

version = train(
    store,
    TrainConfig(
        model="crn",
        feature_id=ids["magnitude"],
        model_args={"channels": [2, 2, 2, 2, 2], "lstm_layers": 1},
        epochs=1,
        batch_size=2,
        segment=10,
        max_steps=2,
    ),
    "cpu",
    progress=False,
)
from training.evaluate import make_enhancer, new_run, plan_evaluation, enhance_shard, metrics_shard

for split in ("test", "train"):
    enh = make_enhancer(store, version)
    try:
        shards = plan_evaluation(store, "noisy", split)
    except Exception as e:
        print("no", split, e)
        continue
    run = new_run(enh, "noisy", split)
    for shard in shards:
        rows = enhance_shard(store, run, enh, shard)
        metrics_shard(store, run, shard, rows)
    print("run", run.run_id)
    break
print(ids, version)
from stores.verify import verify_store

print("verify:", verify_store(store))
