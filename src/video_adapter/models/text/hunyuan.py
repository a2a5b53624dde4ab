"""HunyuanVideo's two text encoders as one `TextEncoder`, exactly as HunyuanVideoPipeline.encode_prompt runs them.

- tokens, mask: the Llama encoder (text_encoder/, tokenizer/) on the prompt inside the pipeline's template, its
  hidden states two layers before the last, with the template's `crop_start` tokens cropped off the front
  (max_length tokens remain);
- pooled: CLIP's pooled output (text_encoder_2/, tokenizer_2/, 77 tokens, no attention mask), zero-padded to the Llama
  width, because a `TextEmbedding`'s pooled vector has the tokens' width. HunyuanVideo's transformer reads the first
  pooled_projection_dim entries; an adapter trained in this space sees CLIP's sentence embedding.

Spec: "hunyuan:/pipeline/dir?max_length=256".
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import TextEncoder, as_dtype, dtype_name
from .hf import TextEncoderNotFoundError, _fingerprint_dir, _offline_env

PARTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
CLIP_TOKENS = 77
LAYERS_SKIPPED = 2  # the pipeline's num_hidden_layers_to_skip: hidden_states[-(2 + 1)]


class HunyuanTextEncoder(TextEncoder):
    kind = "hunyuan"

    def __init__(self, path, max_length: int = 256, device=None, dtype=None, batch_size: int = 64):
        super().__init__(max_length, device, batch_size)
        root = Path(str(path)).expanduser()
        missing = [p for p in PARTS if not (root / p).is_dir()]
        if missing:
            raise TextEncoderNotFoundError(f"hunyuan text encoder {str(root)!r} must be a HunyuanVideo pipeline "
                                           f"directory (saved with save_pretrained); it lacks {', '.join(missing)}/")
        self.root, self.dtype = root.resolve(), as_dtype(dtype)
        _offline_env()
        from transformers import AutoConfig

        self.config = AutoConfig.from_pretrained(str(self.root / "text_encoder"), local_files_only=True)
        clip = AutoConfig.from_pretrained(str(self.root / "text_encoder_2"), local_files_only=True)
        if clip.hidden_size > self.config.hidden_size:
            raise ValueError(f"CLIP's pooled width {clip.hidden_size} exceeds the Llama width "
                             f"{self.config.hidden_size}: it cannot ride in the pooled vector")
        self._parts = None

    @property
    def dim(self) -> int:
        return int(self.config.hidden_size)

    @property
    def spec(self) -> str:
        spec = f"{self.kind}:{self.root}?max_length={self.max_length}"
        return spec + (f"&dtype={dtype_name(self.dtype)}" if self.dtype != torch.float32 else "")

    @property
    def cache_key(self) -> str:
        return f"{self.spec}#{_fingerprint_dir(*(self.root / p for p in PARTS))}"

    def load(self) -> HunyuanTextEncoder:
        if self._parts is None:
            from transformers import AutoModel, AutoTokenizer, CLIPTextModel

            _offline_env()
            load = dict(local_files_only=True, use_safetensors=True)
            llama = AutoModel.from_pretrained(str(self.root / "text_encoder"), **load)
            clip = CLIPTextModel.from_pretrained(str(self.root / "text_encoder_2"), **load)
            self._parts = tuple(AutoTokenizer.from_pretrained(str(self.root / p), local_files_only=True)
                                for p in ("tokenizer", "tokenizer_2"))
            self._parts += tuple(m.to(self.device, self.dtype).eval().requires_grad_(False) for m in (llama, clip))
        return self

    def _encode_batch(self, captions: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

        tokenizer, tokenizer_2, llama, clip = self.load()._parts
        crop = DEFAULT_PROMPT_TEMPLATE["crop_start"]
        batch = tokenizer([DEFAULT_PROMPT_TEMPLATE["template"].format(c) for c in captions], padding="max_length",
                          max_length=self.max_length + crop, truncation=True, return_tensors="pt").to(self.device)
        hidden = llama(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       output_hidden_states=True).hidden_states[-(LAYERS_SKIPPED + 1)]
        ids_2 = tokenizer_2(captions, padding="max_length", max_length=CLIP_TOKENS, truncation=True,
                            return_tensors="pt").input_ids.to(self.device)
        pooled = clip(ids_2, output_hidden_states=False).pooler_output
        return (hidden[:, crop:], batch.attention_mask[:, crop:].bool(),
                F.pad(pooled, (0, self.dim - pooled.shape[-1])))
