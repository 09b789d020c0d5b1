"""Fine-tuning: chat templates and SFT data with a masked loss, LoRA adapters (HF PEFT layout),
DPO. See docs/finetuning.md. Nothing is imported eagerly beyond the chat templates."""
from .chat_template import ChatTemplate, encode_chat, get_template, render_segments

__all__ = ["ChatTemplate", "encode_chat", "get_template", "render_segments"]
