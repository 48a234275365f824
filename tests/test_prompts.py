"""Prompts exactly as spec 4.1-4.2, rendered with the real Qwen2.5 chat template."""

from __future__ import annotations

import pytest

from hrpo.prompts import (
    SYSTEM_PROMPT,
    add_prompt_column,
    build_messages,
    format_context,
    render_prompt,
    system_prompt,
    user_message,
)

# Spec 4.1, typed out independently of the implementation.
SPEC_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The final answer is provided after the #### tag, i.e., {reasoning process} #### {answer}."
)


def test_system_prompt_is_verbatim():
    assert SYSTEM_PROMPT == SPEC_SYSTEM
    assert system_prompt("<ans>").endswith("after the <ans> tag, i.e., {reasoning process} <ans> {answer}.")


def test_math_user_message_is_the_stripped_question():
    assert user_message({"task": "gsm8k", "question": "  What is 2+2?\n"}) == "What is 2+2?"
    assert user_message({"task": "math", "question": "Find $x$. "}) == "Find $x$."


def test_multiple_choice_user_message():
    row = {
        "task": "multiple_choice",
        "question": "Which is red?",
        "choices": ["sky", "blood", "grass", "snow"],
    }
    assert user_message(row) == "Question: Which is red?\nOptions:\nA. sky\nB. blood\nC. grass\nD. snow"
    five = {**row, "choices": ["a", "b", "c", "d", "e"]}
    assert user_message(five).endswith("\nE. e")


def authors_rag_prompt(question, contexts, topk=3):
    """The authors' construction (utils.py process_rag / eval_rag.py get_prompt), re-typed from its description:
    per context, split at newlines, strip quotes off the first piece, join with '::::', add a newline; then
    a blank line and the question; the whole string stripped."""
    prompt = "Context (which may or may not be relevant):\n"
    for context in contexts[:topk]:
        pieces = context.split("\n")
        pieces[0] = pieces[0].strip('"')
        prompt += "::::".join(pieces) + "\n"
    prompt += f"\nQuestion: {question}"
    return prompt.strip()


def test_rag_user_message_is_byte_identical_to_the_original():
    contexts = [f'"Title {i}"\nText number {i}.' for i in range(5)]
    row = {"task": "qa", "question": "who?", "contexts": contexts}
    expected = (
        "Context (which may or may not be relevant):\n"
        "Title 0::::Text number 0.\nTitle 1::::Text number 1.\nTitle 2::::Text number 2.\n"
        "\nQuestion: who?"
    )
    assert user_message(row) == expected == authors_rag_prompt("who?", contexts)
    assert user_message(row, topk=1).count("::::") == 1
    assert format_context('"Quoted "inner" title"\nbody') == 'Quoted "inner" title::::body'
    assert user_message({"task": "qa", "question": "who?", "contexts": []}) == "Question: who?"


def test_rag_passage_newlines_become_separators():
    contexts = ['"Multi"\nfirst line\nsecond line\n', '""Quoted""\n  spaced  ', "no title line"]
    message = user_message({"task": "qa", "question": " q ", "contexts": contexts})
    assert message == authors_rag_prompt(" q ", contexts)
    assert "Multi::::first line::::second line::::\n" in message
    assert "Quoted::::  spaced  \n" in message and "\nno title line\n\nQuestion:  q" in message


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="task"):
        user_message({"id": "x", "question": "q"})


def test_rendered_with_qwen_chat_template(qwen_tokenizer):
    row = {"task": "gsm8k", "question": "What is 2+2?"}
    text = render_prompt(build_messages(row), qwen_tokenizer)
    assert text == (
        f"<|im_start|>system\n{SPEC_SYSTEM}<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = qwen_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == qwen_tokenizer.convert_tokens_to_ids("<|im_start|>")


def test_trl_prompt_column_is_conversational():
    rows = add_prompt_column([{"task": "gsm8k", "question": "q", "gold": "1"}])
    assert rows[0]["prompt"] == [
        {"role": "system", "content": SPEC_SYSTEM},
        {"role": "user", "content": "q"},
    ]
    assert rows[0]["gold"] == "1"
