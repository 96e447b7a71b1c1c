with

accounts as (

    select * from {{ ref('stg_evo__accounts') }}

),

billing_items as (

    select * from {{ ref('stg_evo__account_billing_items') }}

),

billing as (

    select
        account_id,
        max(case when billing_item = 'base' then base_cost end) as base_cost,
        max(case when billing_item = 'inboundVoiceCalls' then unit_cost end)
            as inbound_voice_unit_cost,
        max(case when billing_item = 'inboundVoiceCalls' then allowance end)
            as inbound_voice_allowance,
        max(case when billing_item = 'outboundVoiceCalls' then unit_cost end)
            as outbound_voice_unit_cost,
        max(case when billing_item = 'outboundVoiceCalls' then allowance end)
            as outbound_voice_allowance,
        -- Every item as one JSON object keyed by item name (sorted, so rebuilds are
        -- byte-identical); new billing items need no schema change. DuckDB-specific.
        to_json(map_from_entries(list(
            struct_pack(
                item := billing_item,
                settings := json_object(
                    'base_cost', base_cost,
                    'raw_unit_multiplier', raw_unit_multiplier,
                    'unit_cost', unit_cost,
                    'allowance', allowance
                )
            )
            order by billing_item
        ))) as billing_items
    from billing_items
    group by account_id

),

final as (

    select
        accounts.account_id,
        accounts.account_name,
        accounts.parent_account_id,
        parent_accounts.account_name as parent_account_name,
        accounts.ancestor_ids,
        accounts.twilio_account_sid,
        accounts.trust_hub_profile_sid,
        accounts.max_phone_numbers,
        accounts.is_byoa,
        accounts.logo_id,
        accounts.logo_uri,
        accounts.created_at,
        accounts.last_modified_at,
        billing.base_cost,
        billing.inbound_voice_unit_cost,
        billing.inbound_voice_allowance,
        billing.outbound_voice_unit_cost,
        billing.outbound_voice_allowance,
        billing.billing_items,
        accounts.synced_at

    from accounts
    left join accounts as parent_accounts
        on accounts.parent_account_id = parent_accounts.account_id
    left join billing
        on accounts.account_id = billing.account_id

)

select * from final
