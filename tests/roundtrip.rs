//! Every generated request and response type is written and read back
//! unchanged, through the same functions the server and client use.

use proptest::prelude::*;
use umws::types;
use umws_soap::xml::{from_fragment, to_fragment};

fn round_trip<T>(value: &T) -> T
where
    T: xsd_parser_types::quick_xml::WithSerializer
        + xsd_parser_types::quick_xml::WithDeserializer
        + std::fmt::Debug,
{
    let bytes = to_fragment(value).unwrap_or_else(|e| panic!("write {value:?}: {e}"));
    let xml = String::from_utf8(bytes).unwrap();
    from_fragment(&xml).unwrap_or_else(|e| panic!("read back {xml}: {e}"))
}

macro_rules! assert_round_trips {
    ($($value:expr),* $(,)?) => {$(
        let value = $value;
        assert_eq!(round_trip(&value), value);
    )*};
}

#[test]
fn empty_and_fixed_messages_round_trip() {
    assert_round_trips!(
        types::IsUmEnabled {},
        types::IsUmEnabledResponse {
            is_um_enabled_response: true
        },
        types::IsUmEnabledResponse {
            is_um_enabled_response: false
        },
        types::GetUmProperties {},
        types::SetOofStatus { status: true },
        types::SetOofStatusResponse {},
        types::SetPlayOnPhoneDialStringResponse {},
        types::SetTelephoneAccessFolderEmailResponse {},
        types::SetMissedCallNotificationEnabled { status: false },
        types::SetMissedCallNotificationEnabledResponse {},
        types::ResetPin {},
        types::ResetPinResponse {},
        types::DisconnectResponse {},
        types::PlayOnPhoneResponse {
            play_on_phone_response: None
        },
        types::PlayOnPhoneGreetingResponse {
            play_on_phone_greeting_response: Some("Y2FsbA==".into())
        },
    );
}

/// The dispatcher builds the value of a request type without data itself when the element is
/// bare; the deserializer must read every bare form to that same value.
#[test]
fn bare_elements_of_types_without_data_read_as_the_dispatcher_builds_them() {
    fn check<T>(local: &str, built: T)
    where
        T: xsd_parser_types::quick_xml::WithDeserializer + std::fmt::Debug + PartialEq,
    {
        let ns = "http://schemas.microsoft.com/exchange/services/2006/messages";
        for xml in [
            format!(r#"<{local} xmlns="{ns}"/>"#),
            format!(r#"<{local} xmlns="{ns}"></{local}>"#),
            format!(
                r#"<m:{local} xmlns:m="{ns}" xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"/>"#
            ),
        ] {
            let read: T = from_fragment(&xml).unwrap_or_else(|e| panic!("{xml}: {e}"));
            assert_eq!(read, built, "{xml}");
        }
    }
    check("IsUMEnabled", types::IsUmEnabled {});
    check("GetUMProperties", types::GetUmProperties {});
    check("ResetPIN", types::ResetPin {});
}

#[test]
fn every_enumeration_value_round_trips() {
    use types::{UmCallStateType as S, UmEventCauseType as C};
    for state in [
        S::Idle,
        S::Connecting,
        S::Alerted,
        S::Connected,
        S::Disconnected,
        S::Incoming,
        S::Transferring,
        S::Forwarding,
    ] {
        for cause in [C::None, C::UserBusy, C::NoAnswer, C::Unavailable, C::Other] {
            assert_round_trips!(types::GetCallInfoResponse {
                get_call_info_response: types::UmCallInfoType {
                    call_state: state.clone(),
                    event_cause: cause.clone()
                },
            });
        }
    }
    for greeting in [
        types::UmGreetingType::NormalCustom,
        types::UmGreetingType::OofCustom,
    ] {
        assert_round_trips!(types::PlayOnPhoneGreeting {
            greeting_type: greeting,
            dial_string: Some("4711".into())
        });
    }
}

#[test]
fn wire_names_are_the_spec_names() {
    let xml = String::from_utf8(
        to_fragment(&types::GetUmPropertiesResponse {
            get_um_properties_response: types::UmPropertiesType {
                oof_status: true,
                missed_call_notification_enabled: false,
                play_on_phone_dial_string: None,
                telephone_access_numbers: Some("+1 425 555 0100, +1 425 555 0101".into()),
                telephone_access_folder_email: None,
            },
        })
        .unwrap(),
    )
    .unwrap();
    // The children of UMProperties and UMCallInfo are in the messages namespace, unprefixed
    // under its default declaration, as Exchange writes them (UM-SPEC.md, "Types").
    assert_eq!(
        xml,
        "<GetUMPropertiesResponse xmlns=\"http://schemas.microsoft.com/exchange/services/2006/messages\">\
         <GetUMPropertiesResponse>\
         <OofStatus>true</OofStatus><MissedCallNotificationEnabled>false</MissedCallNotificationEnabled>\
         <TelephoneAccessNumbers>+1 425 555 0100, +1 425 555 0101</TelephoneAccessNumbers>\
         </GetUMPropertiesResponse></GetUMPropertiesResponse>"
    );
    let xml = String::from_utf8(
        to_fragment(&types::GetCallInfoResponse {
            get_call_info_response: types::UmCallInfoType {
                call_state: types::UmCallStateType::Connected,
                event_cause: types::UmEventCauseType::None,
            },
        })
        .unwrap(),
    )
    .unwrap();
    // (`t` is declared because the enumerations of the values are types-namespace types;
    // no element uses it.)
    assert_eq!(
        xml,
        "<GetCallInfoResponse xmlns=\"http://schemas.microsoft.com/exchange/services/2006/messages\" \
         xmlns:t=\"http://schemas.microsoft.com/exchange/services/2006/types\">\
         <GetCallInfoResponse><CallState>Connected</CallState><EventCause>None</EventCause>\
         </GetCallInfoResponse></GetCallInfoResponse>"
    );
    let xml = String::from_utf8(
        to_fragment(&types::SetTelephoneAccessFolderEmail {
            base_64_folder_id: Some("AA==".into()),
        })
        .unwrap(),
    )
    .unwrap();
    assert!(
        xml.contains("<base64FolderId>AA==</base64FolderId>"),
        "{xml}"
    );
    let xml = String::from_utf8(
        to_fragment(&types::PlayOnPhone {
            entry_id: Some("e".into()),
            dial_string: Some("1".into()),
        })
        .unwrap(),
    )
    .unwrap();
    assert!(
        xml.contains("<entryId>e</entryId><DialString>1</DialString>"),
        "{xml}"
    );
}

/// Text an XML 1.0 document can carry (no control characters), with the
/// characters that need escaping well represented.
///
/// Known limit: xsd-parser-types' reader trims ASCII whitespace around
/// simple content (`ContentDeserializer` calls `trim_ascii`), even for
/// `xs:string`, whose whitespace facet is `preserve`. No UM value has
/// meaningful outer whitespace (the service trims dial strings and ids
/// anyway), so generated strings here have none; the behaviour itself is
/// pinned by `outer_whitespace_of_text_is_trimmed_on_read`.
fn xml_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 <>&\"'éü€+,()#*-]{0,40}")
        .unwrap()
        .prop_map(|s| s.trim().to_owned())
}

#[test]
fn outer_whitespace_of_text_is_trimmed_on_read() {
    let value = types::SetPlayOnPhoneDialString {
        dial_string: Some("  1 2  ".into()),
    };
    assert_eq!(round_trip(&value).dial_string.as_deref(), Some("1 2"));
}

proptest! {
    #[test]
    fn properties_round_trip(
        oof in any::<bool>(),
        missed in any::<bool>(),
        dial in proptest::option::of(xml_text()),
        numbers in proptest::option::of(xml_text()),
        folder in proptest::option::of(xml_text()),
    ) {
        let value = types::GetUmPropertiesResponse {
            get_um_properties_response: types::UmPropertiesType {
                oof_status: oof,
                missed_call_notification_enabled: missed,
                play_on_phone_dial_string: dial,
                telephone_access_numbers: numbers,
                telephone_access_folder_email: folder,
            },
        };
        prop_assert_eq!(round_trip(&value), value);
    }

    #[test]
    fn string_requests_round_trip(a in proptest::option::of(xml_text()), b in proptest::option::of(xml_text())) {
        let value = types::PlayOnPhone { entry_id: a.clone(), dial_string: b.clone() };
        prop_assert_eq!(round_trip(&value), value);
        let value = types::SetPlayOnPhoneDialString { dial_string: a.clone() };
        prop_assert_eq!(round_trip(&value), value);
        let value = types::GetCallInfo { call_id: b };
        prop_assert_eq!(round_trip(&value), value);
    }
}
