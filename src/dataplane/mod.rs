//! The route programmer: owns the kernel routes carrying tortie's route
//! protocol number and reconciles them (dump, diff, replace). Built by the
//! dataplane issue; nothing lives here yet.
