"""Audio adapter: waveforms <-> normalised log spectrograms (mel or linear
frequency), WAV files in and out, time inpainting, and round-trip quality
measures.

==========================  ==================================================
model space                 ``(B, 1, bins, frames)`` float in [-1, 1]:
                            ``2 (dB - db_floor) / (db_ceiling - db_floor) - 1``
                            of the power spectrogram, clipped; ``bins`` is
                            ``n_mels`` (``scale="mel"``) or ``n_fft // 2 + 1``
                            (``scale="linear"``)
data space                  waveforms ``(B, clip_samples)`` float in [-1, 1]
                            at ``sample_rate``
encode                      ``mel``: torchaudio ``MelSpectrogram`` (HTK mel
                            scale); ``linear``: ``|STFT|^2``; both with a Hann
                            window and centred frames
decode                      dB -> power -> (mel only: non-negative least
                            squares, ``mel_inverse``) -> ``GriffinLim``
==========================  ==================================================

Why two scales: Griffin-Lim recovers a clip well from its linear magnitude
(spectral convergence 0.06 on held-out spoken digits at 16 kHz) and from
many mel bands of a short STFT (0.13 from 96 mels of a 512-point STFT), but
not from few bands of a long one, whose inverse smears each band over the
bins it pools (0.49 from 64 mels of a 1024-point STFT, 0.63 from 32 mels at
8 kHz, with the plain least-squares inverse). The mel inverse is
non-negative least squares: where narrow low bands share STFT bins, the
plain least-squares one turns small errors in them into loud low-frequency
spikes. See docs/results/audio.md.

Every parameter lives in :class:`SpectrogramConfig`, which a run saves in its
config, so a run always decodes with what it was trained on.

Loading (:func:`load_wav`, :func:`fit_clip`): stereo is mixed down to mono,
other rates are resampled with ``torchaudio.functional.resample``; then the
clip is trimmed of leading and trailing silence (quieter than ``trim_db``
below its peak), peak-normalised to ``peak``, and fitted to
``clip_samples``: a longer clip keeps its first ``clip_samples`` samples (the
onset, which for a word or a note carries the identity), a shorter one is
padded with silence at the end.

torchaudio is imported inside the functions that need it, so importing this
package needs only torch. The package's modules: :mod:`.spectrogram`
(the config, encode / decode, Griffin-Lim, round-trip measures), :mod:`.files`
(WAV in and out, resampling, fitting clips), :mod:`.pitch` (YIN f0),
:mod:`.inpainting` (masks, the mask-aware model's signal, fill baselines and
measures) and :mod:`.pictures`.
"""

from .files import (AudioFileError, fit_clip, load_wav, read_wav, resample, resample_clips, save_wav, to_mono,
                    trim_silence)
from .inpainting import (CONTEXT_FILLS, INPAINT_TASKS, context_signal, frame_mask, gap_mask, hidden_lsd, hidden_rms,
                         inpaint_frames, interpolate_frames, random_masks, silence_fill, task_mask)
from .pictures import save_spectrograms
from .pitch import cents, estimate_f0, midi_to_hz
from .spectrogram import (MEL_INVERSES, SCALES, SpectrogramConfig, decode, encode, griffin_lim, log_spectral_distance,
                          mel_filterbank, mel_power, mel_to_linear, power_spectrogram, spectral_convergence,
                          stft_magnitude, to_power)

__all__ = ["AudioFileError", "CONTEXT_FILLS", "INPAINT_TASKS", "MEL_INVERSES", "SCALES", "SpectrogramConfig", "cents",
           "context_signal", "decode", "encode", "estimate_f0", "fit_clip", "frame_mask", "gap_mask", "griffin_lim",
           "hidden_lsd", "hidden_rms", "inpaint_frames", "interpolate_frames", "load_wav", "log_spectral_distance",
           "mel_filterbank", "mel_power", "mel_to_linear", "midi_to_hz", "power_spectrogram", "random_masks",
           "read_wav", "resample", "resample_clips", "save_spectrograms", "save_wav", "silence_fill",
           "spectral_convergence", "stft_magnitude", "task_mask", "to_mono", "to_power", "trim_silence"]
