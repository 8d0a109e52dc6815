//! The BGP wire codec. (Being written by the wire-codec issue.)
