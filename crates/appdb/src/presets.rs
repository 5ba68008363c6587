//! Presets ("assistants"): a named model and settings to start chats from.

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::{json_column, to_json, ChatSettings, Db, Result};

/// A user's saved preset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub id: i64,
    pub name: String,
    pub model: Option<String>,
    pub settings: ChatSettings,
}

/// The fields of a preset to create or replace; the name has 1 to 100 characters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewPreset {
    pub name: String,
    pub model: Option<String>,
    #[serde(default)]
    pub settings: ChatSettings,
}

const PRESET_COLUMNS: &str = "id, name, model, settings";

fn preset_row(row: &Row<'_>) -> rusqlite::Result<Preset> {
    Ok(Preset {
        id: row.get(0)?,
        name: row.get(1)?,
        model: row.get(2)?,
        settings: json_column(row, 3)?,
    })
}

/// The preset's name, checked, and its settings as JSON.
fn checked(preset: &NewPreset) -> Result<(&str, String)> {
    let name = preset.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(invalid("preset name", "it must have 1 to 100 characters"));
    }
    Ok((name, to_json("preset settings", &preset.settings)?))
}

impl Db {
    /// The presets of `user_id`, oldest first.
    pub fn presets(&self, user_id: i64) -> Result<Vec<Preset>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {PRESET_COLUMNS} FROM presets WHERE user_id = ?1 ORDER BY id"
        ))?;
        let presets = stmt
            .query_map([user_id], preset_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(presets)
    }

    /// Saves a new preset of `user_id`.
    pub fn create_preset(&self, user_id: i64, preset: &NewPreset) -> Result<Preset> {
        let (name, settings) = checked(preset)?;
        Ok(self.conn().query_row(
            &format!(
                "INSERT INTO presets (user_id, name, model, settings) VALUES (?1, ?2, ?3, ?4)
                 RETURNING {PRESET_COLUMNS}"
            ),
            params![user_id, name, preset.model, settings],
            preset_row,
        )?)
    }

    /// Replaces preset `id`; `None` if it is not `user_id`'s.
    pub fn update_preset(
        &self,
        user_id: i64,
        id: i64,
        preset: &NewPreset,
    ) -> Result<Option<Preset>> {
        let (name, settings) = checked(preset)?;
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "UPDATE presets SET name = ?1, model = ?2, settings = ?3
                     WHERE id = ?4 AND user_id = ?5 RETURNING {PRESET_COLUMNS}"
                ),
                params![name, preset.model, settings, id, user_id],
                preset_row,
            )
            .optional()?)
    }

    /// Deletes preset `id`; false if it is not `user_id`'s.
    pub fn delete_preset(&self, user_id: i64, id: i64) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM presets WHERE id = ?1 AND user_id = ?2",
            [id, user_id],
        )? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DbError;

    #[test]
    fn presets_are_per_user_and_named() {
        let db = Db::open_in_memory().unwrap();
        let a = db.local_user().unwrap().id;
        let b = db
            .create_user("bob", "password1", crate::Role::User, crate::Status::Active)
            .unwrap()
            .id;
        let new = NewPreset {
            name: "Coder".into(),
            model: Some("qwen".into()),
            settings: ChatSettings {
                system: Some("You write Rust.".into()),
                ..ChatSettings::default()
            },
        };
        let p = db.create_preset(a, &new).unwrap();
        assert_eq!(
            (p.name.as_str(), p.settings.clone()),
            ("Coder", new.settings.clone())
        );
        assert_eq!(db.presets(a).unwrap(), vec![p.clone()]);
        assert!(db.presets(b).unwrap().is_empty());

        let renamed = NewPreset {
            name: "Rustacean".into(),
            model: None,
            ..new.clone()
        };
        assert_eq!(db.update_preset(b, p.id, &renamed).unwrap(), None);
        let p2 = db.update_preset(a, p.id, &renamed).unwrap().unwrap();
        assert_eq!((p2.name.as_str(), p2.model.clone()), ("Rustacean", None));
        assert!(!db.delete_preset(b, p.id).unwrap());
        assert!(db.delete_preset(a, p.id).unwrap());
        assert!(db.presets(a).unwrap().is_empty());

        for name in ["", "  ", &"x".repeat(101)] {
            let bad = NewPreset {
                name: name.into(),
                ..new.clone()
            };
            assert!(matches!(
                db.create_preset(a, &bad),
                Err(DbError::Invalid {
                    what: "preset name",
                    ..
                })
            ));
        }
    }
}
