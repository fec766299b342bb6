"""Whisper speech recognition on top of :mod:`edgetf.generation`, in role-named modules.

* :mod:`.tokens` -- the vocabulary's roles (special tokens as named properties, languages, tasks),
  the generation-config settings and the decoder prompt;
* :mod:`.seek` -- the encoder + decoder sessions and the 30-second window ("seek") loop, with the
  timestamp logits rules;
* :mod:`.fallback` -- the robust long-form decisions (temperature fallback, compression ratio,
  average log-probability, no-speech skipping, prompts and previous text as decoder input);
* :mod:`.segments` -- generated ids -> text and timestamped chunks (``_decode_asr``).

Log-Mel features are generic and live in :mod:`edgetf.audio.features`; the pipeline that ties these
together is :mod:`edgetf.pipelines.whisper_asr`.
"""
