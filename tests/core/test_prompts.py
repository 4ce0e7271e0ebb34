"""Prompt files: every supported shape reads, every bad record is named by file and line."""

from __future__ import annotations

import json

import pytest

from prefloop.errors import InputError, LabelConfigError
from prefloop.label_config import load_label_config, parse_pairwise_config
from prefloop.prompts import prompt_key, read_prompts

CHAT = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "A joke?"},
]
PAIRWISE = parse_pairwise_config(load_label_config("pairwise"))
PAIRWISE_CHAT = parse_pairwise_config(load_label_config("pairwise_chat"))


def write(tmp_path, name, content) -> str:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def test_json_array_reads_prompts_and_chats_with_their_lines(tmp_path):
    """A JSON array may mix prompt strings, {"prompt"}, chats and {"messages"}; each record knows its line."""
    text = (
        '[\n  "The quick brown fox",\n  {"prompt": "Stock news?"},\n  '
        + json.dumps(CHAT)
        + ',\n  {"messages": '
        + json.dumps(CHAT[:1])
        + "}\n]"
    )
    records = read_prompts(write(tmp_path, "p.json", text))
    assert [r.prompt for r in records] == ["The quick brown fox", "Stock news?", None, None]
    assert records[2].messages == (("user", "Hi"), ("assistant", "Hello!"), ("user", "A joke?"))
    assert [r.where.rsplit(" ", 1)[-1] for r in records] == ["2", "3", "4", "5"]


def test_jsonl_skips_blank_lines_and_csv_reads_quoted_prompts(tmp_path):
    """JSONL: one record per line (blank lines skipped); CSV: a prompt column, quoting as usual, or a
    messages column."""
    jsonl = read_prompts(
        write(tmp_path, "p.jsonl", '"one"\n\n{"prompt": "two"}\n' + json.dumps({"messages": CHAT}) + "\n")
    )
    assert [r.prompt for r in jsonl] == ["one", "two", None] and jsonl[2].where.endswith("line 4")
    csv_text = 'id,prompt\n1,"Hello, world"\n2,"two\nlines"\n3,plain\n'
    assert [r.prompt for r in read_prompts(write(tmp_path, "p.csv", csv_text))] == [
        "Hello, world",
        "two\nlines",
        "plain",
    ]
    chats = read_prompts(write(tmp_path, "c.csv", "messages\n" + '"' + json.dumps(CHAT).replace('"', '""') + '"\n'))
    assert chats[0].messages[0] == ("user", "Hi")


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("empty.jsonl", '"ok"\n"   "\n', "empty.jsonl line 2: the prompt is empty"),
        ("number.jsonl", '"ok"\n{"prompt": 42}\n', 'number.jsonl line 2: "prompt" must be a string, got a number'),
        ("null.json", '[\n"ok",\nnull\n]', "null.json line 3: a record must be a prompt string"),
        ("broken.jsonl", '"ok"\n{"prompt": "x"\n', "broken.jsonl line 2: not valid JSON"),
        ("broken.json", '[\n"ok"\n"missing comma"\n]', "broken.json line 3 column 1: not valid JSON: Expecting ','"),
        ("object.json", '{"prompt": "x"}', "object.json: expected a JSON array of prompts, got an object"),
        (
            "chat.jsonl",
            json.dumps([{"role": "user", "content": ""}]) + "\n",
            "chat.jsonl line 1: message 0 has empty content",
        ),
        ("msg.jsonl", json.dumps({"role": "user", "content": "hi"}) + "\n", "a chat is a list of them"),
        ("both.jsonl", json.dumps({"prompt": "a", "messages": CHAT}) + "\n", "both.jsonl line 1: has both"),
        ("nohead.csv", "text\nhello\n", "nohead.csv: a CSV prompt file needs a header row with a 'prompt' column"),
        ("empty.csv", 'prompt\nok\n""\n', "empty.csv line 3: the prompt is empty"),
        ("extra.csv", "prompt\nok\na,b\n", "extra.csv line 3: has more fields than the header"),
        ("nothing.jsonl", "\n\n", "nothing.jsonl holds no prompts"),
        ("prompts.txt", "hello", "unknown prompt file type '.txt'"),
    ],
)
def test_bad_records_are_named_by_file_and_line(tmp_path, name, content, expected):
    """Each class of bad input raises InputError naming the file and the record's line."""
    with pytest.raises(InputError) as err:
        read_prompts(write(tmp_path, name, content))
    assert expected in str(err.value)


def test_invalid_utf8_names_the_line_and_byte(tmp_path):
    """A file that is not UTF-8 is refused as a whole, pointing at the first bad byte."""
    path = write(tmp_path, "latin1.jsonl", b'"fine"\n"also fine"\n' + '"caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.jsonl line 3: invalid UTF-8 \(byte 0xe9 at column 5\)"):
        read_prompts(path)


def test_every_bad_record_is_listed_and_nothing_is_returned(tmp_path):
    """With several bad records the error lists all of them, so one fix-up round is enough."""
    with pytest.raises(InputError) as err:
        read_prompts(write(tmp_path, "p.jsonl", '""\n"good"\n7\n{"x": 1}\n'))
    message = str(err.value)
    assert "3 bad record(s); nothing was imported" in message
    assert all(f"p.jsonl line {n}" in message for n in (1, 3, 4)) and "line 2" not in message


def test_prompt_keys_identify_a_prompt_however_it_was_imported(tmp_path):
    """A record and the task it becomes share one key; a plain prompt in a chat project is a user message."""
    records = read_prompts(write(tmp_path, "p.jsonl", '"Tell me a joke"\n' + json.dumps(CHAT) + "\n"))
    plain, chat = records
    assert plain.task_data(PAIRWISE) == {"prompt": "Tell me a joke"}
    assert plain.task_data(PAIRWISE_CHAT) == {"messages": [{"role": "user", "content": "Tell me a joke"}]}
    task = {"prompt": "Tell me a joke", "answer1": "a", "answer2": "b", "prefloop": {"seed": "1"}}
    assert prompt_key(plain.task_data(PAIRWISE), PAIRWISE) == prompt_key(task, PAIRWISE)
    assert prompt_key(chat.task_data(PAIRWISE_CHAT), PAIRWISE_CHAT) != prompt_key(
        plain.task_data(PAIRWISE_CHAT), PAIRWISE_CHAT
    )
    assert prompt_key({"prompt": ""}, PAIRWISE) is None
    with pytest.raises(LabelConfigError, match="pairwise_chat.xml"):
        chat.task_data(PAIRWISE)


def test_chat_label_config_shows_the_dialogue_and_two_replies():
    """label_config/pairwise_chat.xml: a Paragraphs dialogue from $messages, then the Pairwise answers."""
    xml = load_label_config("pairwise_chat")
    assert PAIRWISE_CHAT.chat_field == "messages" and PAIRWISE_CHAT.prompt_field is None
    assert PAIRWISE_CHAT.answer_fields == ("answer1", "answer2") and PAIRWISE_CHAT.from_name == "pw"
    assert 'nameKey="role"' in xml and 'textKey="content"' in xml
    assert xml.index("<Paragraphs") < xml.index("<Pairwise")
