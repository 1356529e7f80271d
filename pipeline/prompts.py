"""The default prompts, written once: the describe prompt, the judge's instructions and examples, the
explanation prompt (docs/judge.md explains how the judge prompt was chosen)."""

DEFAULT_DESCRIBE_PROMPT = (
    "You are watching a frame from a fixed security camera. In one or two short sentences, describe the "
    "people, vehicles and objects you see and what they are doing. Mention anything unusual, dangerous "
    "or violent. Be factual; do not speculate."
)
DEFAULT_JUDGE_SYSTEM = (
    "Security camera event reports, each rated for whether it shows an anomaly (crime, violence, an "
    "accident, fire, vandalism, theft, or another dangerous or unusual event)."
)
JUDGE_EXAMPLES_BASIC = """Report: A woman walks her dog along the sidewalk.
Anomaly: no

Report: A man breaks the car window with a rock and takes a bag from the seat.
Anomaly: yes

Report: Customers wait in line at the counter and pay for their items.
Anomaly: no

Report: Two men punch and kick each other in the parking lot until one falls down.
Anomaly: yes

Report: A car drives slowly down the street and parks.
Anomaly: no

Report: Flames and thick smoke come out of the building's windows.
Anomaly: yes

"""
JUDGE_EXAMPLES_MORE = """Report: A man in a red shirt walks into the store and looks at the shelves.
Anomaly: no

Report: A police car drives past the building with its lights on.
Anomaly: no

Report: A man points a gun at the cashier and takes money from the register.
Anomaly: yes

Report: Two cars collide at the crossing and one of them overturns.
Anomaly: yes

Report: People sit on a bench and talk while children play nearby.
Anomaly: no

Report: A man climbs over the fence at night and tries to open the back door with a tool.
Anomaly: yes

"""
JUDGE_TARGET = "{context}Report: {descriptions}\nAnomaly:"
DEFAULT_JUDGE_PROMPT = JUDGE_EXAMPLES_MORE + JUDGE_EXAMPLES_BASIC + JUDGE_TARGET
"""The judge prompt: 12 examples (docs/judge.md), then the window's report."""
PROBE_PROMPT = DEFAULT_JUDGE_SYSTEM + "\n\n{context}Report: {descriptions}\nAnomaly:"
"""The text a judge calibration's probe reads, in a pass of its own, its hidden states mean-pooled over all
of it: the instructions and the report without the examples, whose states rank better than the few-shot
prompt's (docs/judge.md)."""
DEFAULT_EXPLAIN_PROMPT = (
    "{context}Camera observations, oldest first:\n{descriptions}\n\n"
    "In one short sentence, say what is anomalous here and why it matters."
)
DEFAULT_SUMMARY_SYSTEM = "You write short, factual summaries of what security cameras recorded."
SUMMARY_EXAMPLE = (
    "Log:\n08:00:05 gate: A delivery van parks at the gate.\n08:02:40 gate: A man carries a parcel to the door.\n"
    "08:03:10 gate: EVENT suspicious (score 0.88): a man takes a parcel from the porch and runs.\n"
    "08:10:00 gate: The street is empty.\n"
    "Summary: One alert: at 08:03 a man took a parcel from the porch of the gate and ran off. Before it a "
    "delivery van parked and a parcel was delivered; afterwards the street stayed empty.\n\n"
)
"""One worked example, so that a small base model answers with a summary rather than more log."""
DEFAULT_SUMMARY_PROMPT = (
    "Summaries of security camera logs: the alerts (EVENT) first, then ordinary activity, in two to four "
    "sentences.\n\n" + SUMMARY_EXAMPLE + "Log of {period}:\n{log}\nSummary:"
)
DEFAULT_SUMMARY_MERGE_PROMPT = (
    "Summaries of security camera logs: the alerts (EVENT) first, then ordinary activity, in two to four "
    "sentences.\n\n" + SUMMARY_EXAMPLE + "Summaries of consecutive parts of {period}:\n{log}\nSummary:"
)
RULE_SYSTEM = "You answer questions about what a security camera saw, with yes or no."
RULE_PROMPT = "{context}Report: {descriptions}\nQuestion: {question} Answer yes or no.\nAnswer:"
"""A rule's question about a window; the report comes first so rules about one window share it."""
