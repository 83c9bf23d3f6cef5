"""A real byte-level BPE tokenizer built offline, for the LLM mechanics tests (no hub download)."""
from __future__ import annotations


def bpe_tokenizer(corpus: str = "A new classification feature in postfix: age hours mul ; end score: 0 1 2 3"):
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<unk>", "<s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([corpus] * 20, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", unk_token="<unk>",
                                                pad_token="<pad>")
