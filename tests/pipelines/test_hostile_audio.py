"""Corrupt and hostile audio made from the real recordings: each is a `Rejected` with its reason, decided
before anything large is allocated, and nothing else ever escapes `load_audio`."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from pipelines.audio import (
    AudioConfig,
    Rejected,
    _decode_stream,
    decoder_rejected,
    load_audio,
    memory_bound,
)
from pipelines.fuzzing import with_flac_total_frames, with_wav_sample_rate
from pipelines.mixing import PairConfig
from pipelines.testing import ingest_in_process, pairs_in_process, write_audio

WAV = "clean/pyroomacoustics__cmu_arctic_us_aew_a0001.wav"  # 124 KB, 16 kHz: the 1 Hz WAV
FLAC = "clean/lhotse__2412-153948-0001.flac"  # 191 KB: the FLAC

# Runs in a fresh interpreter whose address space is capped at what it uses after its imports plus 256 MiB:
# an allocation sized by the damaged header (4 GB for the 1 Hz WAV, 256 GiB for the FLAC) cannot happen
# there, it would end as MemoryError (which load_audio would report as "decoding failed", not the reason
# the test expects).
UNDER_LIMIT = textwrap.dedent(
    """
    import resource, sys
    from pipelines.audio import AudioConfig, Rejected, load_audio
    kib = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (kib * 1024 + (256 << 20), resource.RLIM_INFINITY))
    try:
        loaded = load_audio(sys.argv[1], AudioConfig())
        print("decoded", loaded.samples.shape[0])
    except Rejected as rej:
        print(rej.reason, "|", rej.detail)
    """
)


def _load_under_memory_limit(path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", UNDER_LIMIT, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def hostile(real_data, tmp_path):
    wav, flac = (real_data / WAV).read_bytes(), (real_data / FLAC).read_bytes()
    files = {
        "rate-1hz.wav": with_wav_sample_rate(wav, 1),
        "frames-68g.flac": with_flac_total_frames(flac, 68_719_443_936),
        "original.wav": wav,
        "original.flac": flac,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize(
    "name,expected",
    [
        ("rate-1hz.wav", "unsupported sample rate | 1 Hz"),
        ("frames-68g.flac", "implausible frame count | the header declares 68,719,443,936 frames"),
        ("original.wav", "decoded 62081"),  # the same limit leaves room for the real files
        ("original.flac", "decoded 168160"),
    ],
)
def test_damaged_headers_are_rejected_before_anything_large_is_allocated(hostile, name, expected):
    assert _load_under_memory_limit(hostile / name).startswith(expected)


def test_rewritten_headers_change_only_that_field(real_data):
    wav = (real_data / WAV).read_bytes()
    assert sf.info(real_data / WAV).samplerate == 16000
    changed = with_wav_sample_rate(wav, 1)
    assert len(changed) == len(wav) and sum(a != b for a, b in zip(changed, wav, strict=True)) <= 4


def test_frame_count_the_file_can_hold_but_the_stream_lacks(real_data, tmp_path):
    """Ten times the real frame count is plausible for FLAC's compression; decoding then fails inside
    libsndfile, bounded by blocks, and the reject names the exception's type."""
    flac = (real_data / FLAC).read_bytes()
    (tmp_path / "x10.flac").write_bytes(with_flac_total_frames(flac, 1_681_600))
    with pytest.raises(Rejected) as info:
        load_audio(str(tmp_path / "x10.flac"), AudioConfig())
    assert info.value.reason == "unreadable file" and info.value.detail.startswith("LibsndfileError")


def test_too_long_from_the_header_and_while_streaming(real_data):
    path = real_data / WAV  # 3.9 s
    with pytest.raises(Rejected, match="too long: 3.9 s, the maximum is 2.0 s"):
        load_audio(str(path), AudioConfig(max_duration_s=2.0))
    # a stream whose header declares no length stops at the limit too, whatever it holds
    with sf.SoundFile(path) as sound, pytest.raises(Rejected, match="too long: more than 2.0 s"):
        _decode_stream(sound, AudioConfig(max_duration_s=2.0))


def test_file_larger_than_the_limit_is_rejected_unread(real_data):
    with pytest.raises(Rejected, match="file too large: 124,206 bytes, the maximum is 100,000"):
        load_audio(str(real_data / WAV), AudioConfig(max_file_bytes=100_000))


def test_float_samples_far_out_of_range_are_rejected_mild_overs_are_clipping(real_data, tmp_path):
    speech, rate = sf.read(real_data / WAV, dtype="float32")
    speech = speech / np.max(np.abs(speech))
    write_audio(tmp_path / "far.wav", speech * 100, rate, subtype="FLOAT")
    write_audio(tmp_path / "mild.wav", speech * 1.5, rate, subtype="FLOAT")
    with pytest.raises(Rejected, match="samples out of range: peak magnitude 100"):
        load_audio(str(tmp_path / "far.wav"), AudioConfig())
    loaded = load_audio(str(tmp_path / "mild.wav"), AudioConfig())
    assert loaded.clipped_samples > 0 and loaded.peak > 1.0


def test_paths_that_are_not_regular_files(real_data, tmp_path):
    (tmp_path / "folder.wav").mkdir()
    os.symlink("nowhere.wav", tmp_path / "dangling.wav")
    os.symlink("loop.wav", tmp_path / "loop.wav")
    os.symlink(real_data / WAV, tmp_path / "link.wav")
    for name in ("folder.wav", "dangling.wav", "loop.wav", "absent.wav"):
        with pytest.raises(Rejected) as info:
            load_audio(str(tmp_path / name), AudioConfig())
        assert info.value.reason == "unreadable file", name
    assert load_audio(str(tmp_path / "link.wav"), AudioConfig()).source_sample_rate == 16000


def test_any_decoder_exception_is_a_reject_naming_its_type():
    rejected = decoder_rejected(MemoryError("Unable to allocate 256. GiB"))
    assert rejected.reason == "decoding failed" and rejected.detail.startswith("MemoryError: ")
    rejected = decoder_rejected(sf.LibsndfileError(1, "x: "))
    assert rejected.detail.startswith("LibsndfileError: ")


def test_memory_bound_follows_the_limits():
    ingest = memory_bound(AudioConfig())
    # 81 MiB: twice 10 min at 16 kHz (only while a stream outgrows its header) and a few blocks of 2^18
    assert ingest == 2 * 4 * 600 * 16000 + 4 * (1 << 18) * (4 + 4)
    assert memory_bound(AudioConfig(max_duration_s=1200)) - ingest == 2 * 4 * 600 * 16000


def test_noise_and_rir_folders_of_pairs_reject_hostile_files(store, real_data, tmp_path):
    """Noise and RIR folders are ingested through the same shards (corpora noise-*/rir-*): a damaged
    recording there is a reject of that corpus, and the pair set is made from the rest."""
    speech, noise, rir = (tmp_path / name for name in ("speech", "noise", "rir"))
    for folder in (speech, noise, rir):
        folder.mkdir()
    shutil.copyfile(real_data / "clean" / "speechbrain__spk1_snt1.wav", speech / "a.wav")
    shutil.copyfile(real_data / "noise" / "speechbrain__noise2.wav", noise / "good.wav")
    (noise / "rate-1hz.wav").write_bytes(with_wav_sample_rate((real_data / WAV).read_bytes(), 1))
    shutil.copyfile(real_data / "rir" / "speechbrain__rir1.wav", rir / "good.wav")
    flac = with_flac_total_frames((real_data / FLAC).read_bytes(), 68_719_443_936)
    (rir / "frames-68g.flac").write_bytes(flac)
    ingest_in_process(store, "folder", speech, name="speech")
    config = PairConfig(corpus="speech", kind="reverb+noisy", noise="x", rir="x", seed=1)
    made = pairs_in_process(store, "p", config, noise_folder=noise, rir_folder=rir)
    assert sum(s.utterances for s in made) == 1
    rejects = {r["corpus"]: r["reason"] for r in store.read_table("rejects").to_pylist()}
    assert rejects == {"noise-p": "unsupported sample rate", "rir-p": "implausible frame count"}
