//! The key plan: which commands of a batch run, and how the others are answered by their
//! idempotency key. A command whose key was already recorded is answered from the record
//! (replayed, or refused as a reused key); a key used twice within the batch runs once, and
//! its repeat is answered after the run from what the first one recorded.

use std::collections::{HashMap, HashSet};

use super::schedule::Envelope;
use super::{Answer, Idempotency};
use crate::ledger::apply::{Command, CommandError, Outcome};
use crate::store::idempotency::{KeyId, KeyRecord};

/// Returns true when a repeat of `record`'s key carries the same request.
fn same_request(record: &KeyRecord, fingerprint: &[u8]) -> bool {
    record.fingerprint == fingerprint
}

fn key_id(idempotency: &Idempotency) -> KeyId {
    (idempotency.user_id, idempotency.key.clone())
}

/// The answer a key's record gives a command that carries it.
fn from_record(record: &KeyRecord, idempotency: &Idempotency) -> Answer {
    if same_request(record, &idempotency.fingerprint) {
        Answer::Replayed(record.response.clone())
    } else {
        Answer::KeyReused
    }
}

/// The plan of one batch, position by position in the batch.
pub(super) struct KeyPlan {
    /// Each command's answer, once known.
    answers: Vec<Option<Answer>>,
    /// The positions of the commands that run, in the order they run.
    run_index: Vec<usize>,
    /// The keys recorded before the batch, and those it records.
    known_keys: HashMap<KeyId, KeyRecord>,
    /// What the batch records, in the order it ran.
    new_keys: Vec<(KeyId, KeyRecord)>,
    /// Commands to run again with the external account locked (nothing of them is written),
    /// and their keys, whose repeats in the batch go again with them.
    again: HashSet<usize>,
    again_keys: HashSet<KeyId>,
}

impl KeyPlan {
    /// Answers the commands whose key is recorded (`known_keys`, read under lock), and picks the
    /// others to run, each key once.
    pub(super) fn new(batch: &[Envelope], known_keys: HashMap<KeyId, KeyRecord>) -> Self {
        let mut answers = Vec::with_capacity(batch.len());
        let mut run_index = Vec::new();
        let mut first_in_batch: HashSet<KeyId> = HashSet::new();
        for (index, envelope) in batch.iter().enumerate() {
            let answer = match &envelope.idempotency {
                Some(idempotency) => {
                    let id = key_id(idempotency);
                    match known_keys.get(&id) {
                        Some(record) => Some(from_record(record, idempotency)),
                        None => {
                            if first_in_batch.insert(id) {
                                run_index.push(index);
                            }
                            None
                        }
                    }
                }
                None => {
                    run_index.push(index);
                    None
                }
            };
            answers.push(answer);
        }
        KeyPlan {
            answers,
            run_index,
            known_keys,
            new_keys: Vec::new(),
            again: HashSet::new(),
            again_keys: HashSet::new(),
        }
    }

    /// The commands to run, in order.
    pub(super) fn commands(&self, batch: &[Envelope]) -> Vec<Command> {
        self.run_index.iter().map(|position| batch[*position].command.clone()).collect()
    }

    /// Takes the results of [`KeyPlan::commands`], in order: each is the command's answer and
    /// its key's record, except a command that turned out to need the external account, which
    /// goes again.
    pub(super) fn record(&mut self, batch: &[Envelope], results: Vec<Result<Outcome, CommandError>>) {
        assert_eq!(results.len(), self.run_index.len(), "one result per command run");
        for (position, result) in self.run_index.iter().zip(results) {
            let envelope = &batch[*position];
            if result == Err(CommandError::NeedsExternalAccount) && !envelope.external {
                self.again.insert(*position);
                self.again_keys.extend(envelope.idempotency.as_ref().map(key_id));
                continue;
            }
            if let Some(idempotency) = &envelope.idempotency {
                let record =
                    KeyRecord { fingerprint: idempotency.fingerprint.clone(), response: (idempotency.render)(&result) };
                let id = key_id(idempotency);
                self.known_keys.insert(id.clone(), record.clone());
                self.new_keys.push((id, record));
            }
            self.answers[*position] = Some(Answer::Applied(result));
        }
    }

    /// The key records the batch writes.
    pub(super) fn new_keys(&self) -> &[(KeyId, KeyRecord)] {
        &self.new_keys
    }

    /// Every command's answer, `None` for those to run again with the external account locked;
    /// repeats within the batch answered from what their first occurrence recorded.
    pub(super) fn answers(self, batch: &[Envelope]) -> Vec<Option<Answer>> {
        assert_eq!(self.answers.len(), batch.len(), "one answer per command of the batch");
        let KeyPlan { answers, known_keys, again, again_keys, .. } = self;
        answers
            .into_iter()
            .zip(batch)
            .enumerate()
            .map(|(position, (answer, envelope))| match (answer, &envelope.idempotency) {
                _ if again.contains(&position) => None,
                (Some(answer), _) => Some(answer),
                (None, Some(idempotency)) => {
                    let id = key_id(idempotency);
                    if again_keys.contains(&id) {
                        return None;
                    }
                    Some(match known_keys.get(&id) {
                        Some(record) => from_record(record, idempotency),
                        None => Answer::KeyReused,
                    })
                }
                (None, None) => unreachable!("command {position} has no key and was not run"),
            })
            .collect()
    }
}
