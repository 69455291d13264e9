//! Where the subtasks of an attempt run: subtask indexes go round-robin over the task
//! managers that have free slots, one worker process per task manager used.

/// A task manager's free capacity, in placement order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FreeSlots {
    /// The task manager.
    pub tm: String,
    /// Its free slots.
    pub free: usize,
}

/// The outcome of placing an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    /// The task manager of each worker, by worker index.
    pub workers: Vec<String>,
    /// For each subtask index, its worker.
    pub subtask_worker: Vec<usize>,
}

impl Placement {
    /// The subtask indexes worker `w` runs.
    pub fn subtasks_of(&self, w: usize) -> Vec<usize> {
        self.subtask_worker
            .iter()
            .enumerate()
            .filter(|(_, worker)| **worker == w)
            .map(|(subtask, _)| subtask)
            .collect()
    }
}

/// Places `parallelism` subtasks, or `None` if the free slots do not suffice. Subtask `i`
/// goes to the next task manager (in the given order, cycling) that still has a free slot;
/// workers are numbered in the order of their first subtask.
pub(crate) fn place(parallelism: usize, free: &[FreeSlots]) -> Option<Placement> {
    let total: usize = free.iter().map(|f| f.free).sum();
    if parallelism == 0 || total < parallelism {
        return None;
    }
    let mut left: Vec<usize> = free.iter().map(|f| f.free).collect();
    let mut worker_of_tm: Vec<Option<usize>> = vec![None; free.len()];
    let mut workers = Vec::new();
    let mut subtask_worker = Vec::with_capacity(parallelism);
    let mut next = 0;
    for _ in 0..parallelism {
        // `total >= parallelism` guarantees a task manager with a free slot exists.
        while left[next % free.len()] == 0 {
            next += 1;
        }
        let tm = next % free.len();
        left[tm] -= 1;
        let worker = *worker_of_tm[tm].get_or_insert_with(|| {
            workers.push(free[tm].tm.clone());
            workers.len() - 1
        });
        subtask_worker.push(worker);
        next += 1;
    }
    Some(Placement {
        workers,
        subtask_worker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(list: &[(&str, usize)]) -> Vec<FreeSlots> {
        list.iter()
            .map(|(tm, free)| FreeSlots {
                tm: tm.to_string(),
                free: *free,
            })
            .collect()
    }

    #[test]
    fn spreads_over_task_managers() {
        let p = place(2, &free(&[("a", 2), ("b", 2)])).unwrap();
        assert_eq!(p.workers, vec!["a", "b"]);
        assert_eq!(p.subtask_worker, vec![0, 1]);
    }

    #[test]
    fn fills_remaining_slots_round_robin() {
        let p = place(5, &free(&[("a", 1), ("b", 3), ("c", 2)])).unwrap();
        assert_eq!(p.workers, vec!["a", "b", "c"]);
        assert_eq!(p.subtask_worker, vec![0, 1, 2, 1, 2]);
        assert_eq!(p.subtasks_of(1), vec![1, 3]);
    }

    #[test]
    fn skips_full_task_managers() {
        let p = place(2, &free(&[("a", 0), ("b", 2)])).unwrap();
        assert_eq!(p.workers, vec!["b"]);
        assert_eq!(p.subtask_worker, vec![0, 0]);
    }

    #[test]
    fn refuses_when_slots_lack() {
        assert_eq!(place(3, &free(&[("a", 1), ("b", 1)])), None);
        assert_eq!(place(1, &[]), None);
    }
}
